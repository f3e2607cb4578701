import numpy as np
import pytest

from keras_sphere.layers import PhaseCollapse
from keras_sphere.layers.degree_packing import pack_degrees
from keras_sphere.layers.phase_collapse import smooth_modulus
from keras_sphere.sphere import Grid
from keras_sphere.testing import assert_equivariant
from keras_sphere.testing import band_limited_equivariance
from keras_sphere.testing import flip_spatial
from keras_sphere.testing import random_spatial_input
from keras_sphere.testing import randomize_weights
from keras_sphere.testing import roll_spatial
from keras_sphere.testing import run_layer_test
from keras_sphere.testing import spatial_to_spectral

# Pointwise layer: grid symmetries permute samples, so only float32 rounding remains
# (measured 0.0); 1e-5 as in layers.md section 10.2.
EXACT = 1e-5


def complex_input(rng, shape):
    data = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return data.astype(np.complex64)


def collapse_reference(x, layer):
    """float64 NumPy version of layers.md section 2."""
    x = np.asarray(x, np.complex128)

    def value(name):
        real = np.asarray(getattr(layer, f"{name}_real").value, np.float64)
        return real + 1j * np.asarray(getattr(layer, f"{name}_imag").value, np.float64)

    zero = x[..., layer.spins.index(0), :]
    moduli = np.abs(x).reshape(*x.shape[:3], -1)
    new = 0.5 * (zero @ value("w1") + value("b1") + moduli @ value("w2") + value("b2"))
    out = x.copy()
    out[..., layer.spins.index(0), :] = new
    return out


@pytest.mark.parametrize(
    "spins, shape, real",
    [
        ((0,), (2, 8, 8, 1, 3), False),
        ((0,), (2, 8, 8, 1, 3), True),
        ((0, 1), (2, 8, 8, 2, 3), False),
        ((-1, 0, 2), (2, 6, 10, 3, 2), False),
    ],
)
def test_layer_contract(rng, spins, shape, real):
    data = complex_input(rng, shape)
    if real:
        data = data.real.copy()
    n_spins, channels = shape[3], shape[4]
    output = run_layer_test(
        PhaseCollapse,
        dict(spins=spins),
        data,
        shape,
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=0,
        # layers.md section 2: Keras count 2 [(S + 1) C^2 + 2 C].
        expected_num_params=2 * ((n_spins + 1) * channels**2 + 2 * channels),
    )
    assert output.dtype == np.complex64


def test_matches_formula(rng):
    layer = PhaseCollapse(spins=(1, 0, -2))
    data = complex_input(rng, (2, 8, 8, 3, 4))
    layer(data)
    randomize_weights(layer, rng, 0.5)
    expected = collapse_reference(data, layer)
    np.testing.assert_allclose(np.asarray(layer(data)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "grid, spins",
    [(Grid(16, 16), (0, 1)), (Grid(9, 16), (1, 0, -2)), (Grid(8, 8), (0,))],
)
def test_spectral_equals_forward_transform_of_call(rng, grid, spins):
    # Oracle: the layer on the grid followed by `sht` of every spin (the SHTPlan
    # path, not the layers' dense matrices; the moduli also go through `sht`).
    # Both are float32 evaluations of one linear algebra identity
    # (forward(inverse(X)) = X for band-limited X), so they agree to round-off:
    # measured 1e-7 to 5e-7 relative, bound 1e-5.
    field = random_spatial_input(rng, grid, spins, channels=3)  # band-limited
    layer = PhaseCollapse(spins)
    layer.build(field.shape)
    randomize_weights(layer, rng)
    coeffs = spatial_to_spectral(field, grid, spins)
    expected = np.asarray(spatial_to_spectral(layer(field), grid, spins))

    moduli = layer.moduli(field)  # (b, lat, lon, 1, S * C)
    assert moduli.shape == (*field.shape[:3], 1, len(spins) * 3)
    ell_max = grid.max_bandlimit
    moduli_coeffs = pack_degrees(
        spatial_to_spectral(moduli, grid, (0,), ell_max), ell_max
    )
    got = np.asarray(layer.spectral(coeffs, moduli_coeffs))
    assert got.shape == expected.shape and got.dtype == np.complex64
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert error < 1e-5, error


@pytest.mark.parametrize("ell_max_out, grid", [(None, None), (3, None), (7, (9, 16))])
def test_spectral_representation_layer(rng, ell_max_out, grid):
    # Keras contract of the coefficient-to-coefficient mode, and its value against
    # the spatial layer between `isht` and `sht` (SHTPlan path): round-off only,
    # bound 1e-5 relative as above.
    spins, ell_max = (0, 1), 7
    model_grid = Grid.for_bandlimit(ell_max) if grid is None else Grid(*grid)
    field = random_spatial_input(rng, model_grid, spins, channels=3, ell_max=ell_max)
    coeffs = np.asarray(spatial_to_spectral(field, model_grid, spins, ell_max))
    ell_out = ell_max if ell_max_out is None else ell_max_out
    kwargs = dict(
        spins=spins, representation="spectral", grid=grid, ell_max_out=ell_max_out
    )
    out_shape = (2, ell_out + 1, 2 * ell_out + 1, 2, 3)
    run_layer_test(
        PhaseCollapse,
        kwargs,
        coeffs,
        out_shape,
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=0,  # tables are state, not weights
    )
    layer = PhaseCollapse(**kwargs)
    layer.build(coeffs.shape)
    randomize_weights(layer, rng)
    spatial = PhaseCollapse(spins)
    spatial.build(field.shape)
    spatial.set_weights(layer.get_weights())
    # `field` is band-limited at ell_max: it is the inverse transform of `coeffs`.
    expected = np.asarray(
        spatial_to_spectral(spatial(field), model_grid, spins, ell_out)
    )
    got = np.asarray(layer(coeffs))
    assert got.shape == expected.shape == out_shape
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-5


def test_other_spins_pass_through_bit_identically(rng):
    spins = (-1, 0, 2)
    layer = PhaseCollapse(spins=spins)
    data = complex_input(rng, (2, 8, 8, 3, 2))
    layer(data)
    randomize_weights(layer, rng, 0.5)
    output = np.asarray(layer(data))
    for index, spin in enumerate(spins):
        if spin != 0:
            assert np.array_equal(output[..., index, :], data[..., index, :])
    assert not np.allclose(output[..., 1, :], data[..., 1, :])


def test_real_spin_zero_input_is_cast_to_complex(rng):
    layer = PhaseCollapse(spins=(0,))
    data = rng.standard_normal((2, 8, 8, 1, 3)).astype(np.float32)
    layer(data)
    randomize_weights(layer, rng, 0.5)
    np.testing.assert_allclose(
        layer(data), layer(data.astype(np.complex64)), rtol=1e-6, atol=1e-6
    )


def test_default_initialization(rng):
    channels, spins = 32, (0, 1)
    layer = PhaseCollapse(spins=spins)
    layer(np.zeros((1, 4, 4, 2, channels), np.complex64))
    # Real and imaginary parts N(0, 1 / (2 fan_in)); 1024 or 2048 samples each, so
    # the sample std is within ~3% of the target.
    for name, fan_in in (("w1", channels), ("w2", len(spins) * channels)):
        for part in ("real", "imag"):
            value = np.asarray(getattr(layer, f"{name}_{part}").value)
            np.testing.assert_allclose(value.std(), np.sqrt(0.5 / fan_in), rtol=0.1)
    for name in ("b1_real", "b1_imag", "b2_real", "b2_imag"):
        assert not np.any(np.asarray(getattr(layer, name).value))


def test_exact_grid_symmetries(rng):
    spins = (0, 1, -2)
    grid = Grid.for_bandlimit(7)
    layer = PhaseCollapse(spins=spins)
    inputs = random_spatial_input(rng, grid, spins, channels=2)
    layer(inputs)
    randomize_weights(layer, rng, 0.5)
    assert_equivariant(
        layer,
        inputs,
        [
            lambda x: roll_spatial(x, 3),
            lambda x: roll_spatial(x, 8),
            lambda x: flip_spatial(x, spins),
        ],
        [
            lambda y: roll_spatial(y, 3),
            lambda y: roll_spatial(y, 8),
            lambda y: flip_spatial(y, spins),
        ],
        EXACT,
        "PhaseCollapse grid symmetries",
    )


# Measured (spins (0, -1, 2), 16 x 16 grid, weights 0.5 N(0, 1), unit-RMS inputs, 5
# rotations; mean / max over 6 seeds): at L = 7 (the grid's limit, the anchor's
# setting) E 5.5e-2 / 7.8e-2, MAE 6.1e-3 / 7.8e-3, max abs 0.21 / 0.24; at L = 3 (2x
# oversampled) E 3.8e-3 / 5.0e-3, MAE 9.8e-4 / 1.4e-3, max abs 1.9e-2 / 2.6e-2.
# Bounds are about twice the means (the anchor's atol 0.1 / MAE 5e-3 hold only when
# oversampled: aliasing of |x| dominates at the grid's limit).
@pytest.mark.parametrize(
    "ell_max, bounds", [(7, (0.12, 0.013, 0.45)), (3, (8e-3, 2e-3, 0.05))]
)
def test_approximate_so3_equivariance(rng, ell_max, bounds):
    spins = (0, -1, 2)
    errors = band_limited_equivariance(
        PhaseCollapse(spins=spins), rng, spins, Grid.for_bandlimit(7), ell_max
    )
    for error, bound in zip(errors, bounds, strict=True):
        assert error <= bound, (errors, bounds)


def test_gradients_are_finite_at_zero():
    import jax
    import jax.numpy as jnp

    layer = PhaseCollapse(spins=(0, 1))
    zeros = np.zeros((2, 8, 8, 2, 3), np.float32)
    layer(zeros.astype(np.complex64))
    trainable = [w.value for w in layer.trainable_variables]

    def loss(weights, real, imag):
        output, _ = layer.stateless_call(weights, [], jax.lax.complex(real, imag))
        return jnp.sum(jnp.abs(output) ** 2) + jnp.sum(output.real)

    grads = jax.grad(loss, argnums=(0, 1, 2))(trainable, zeros, zeros)
    for grad in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(np.asarray(grad)))
    by_name = {
        v.name: np.asarray(g)
        for v, g in zip(layer.trainable_variables, grads[0], strict=True)
    }
    assert np.all(by_name["b1_real"] != 0)
    assert float(smooth_modulus(jnp.zeros(3, jnp.complex64))[0]) == pytest.approx(1e-6)


def test_errors():
    with pytest.raises(ValueError, match='representation must be "spatial"'):
        PhaseCollapse(spins=(0,), representation="fourier")
    with pytest.raises(ValueError, match="apply to representation"):
        PhaseCollapse(spins=(0,), ell_max_out=3)
    with pytest.raises(ValueError, match="ell_max_out=9 must lie in"):
        PhaseCollapse(spins=(0,), representation="spectral", ell_max_out=9)(
            np.zeros((1, 8, 15, 1, 2), np.complex64)
        )
    with pytest.raises(ValueError, match="spectral input must have shape"):
        PhaseCollapse(spins=(0,), representation="spectral")(
            np.zeros((1, 8, 8, 1, 2), np.complex64)
        )
    with pytest.raises(ValueError, match="needs a spin-0 entry"):
        PhaseCollapse(spins=(1, 2))
    with pytest.raises(ValueError, match="spins must list each spin once"):
        PhaseCollapse(spins=(0, 0))
    with pytest.raises(ValueError, match="rank-5"):
        PhaseCollapse(spins=(0,))(np.zeros((1, 8, 8, 3), np.complex64))
    with pytest.raises(
        ValueError, match="spin axis has 1 entries but spins=\\(0, 1\\)"
    ):
        PhaseCollapse(spins=(0, 1))(np.zeros((1, 8, 8, 1, 3), np.complex64))
