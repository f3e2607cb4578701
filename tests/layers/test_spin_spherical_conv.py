import numpy as np
import pytest

from keras_sphere.layers import SpinSphericalConv
from keras_sphere.layers.spin_spherical_conv import localized_interpolation
from keras_sphere.sphere import Grid
from keras_sphere.testing import assert_equivariant
from keras_sphere.testing import flip_spatial
from keras_sphere.testing import random_rotation
from keras_sphere.testing import random_spatial_input
from keras_sphere.testing import randomize_weights
from keras_sphere.testing import roll_spatial
from keras_sphere.testing import rotate_spatial
from keras_sphere.testing import rotate_spectral
from keras_sphere.testing import run_layer_test
from keras_sphere.testing import run_model_saving_test

# Exact equivariance is limited by float32 rounding of the transforms and the einsum:
# relative errors measured ~1e-7..5e-7; 1e-5 as in layers.md section 10.2.
EXACT = 1e-5


@pytest.mark.parametrize(
    "kwargs, input_shape, output_shape, params",
    [
        (
            dict(filters=4, spins_in=(0,), spins_out=(0, 1)),
            (2, 8, 8, 1, 3),
            (2, 8, 8, 2, 4),
            2 * 4 * 1 * 2 * 3 * 4,
        ),
        (
            dict(filters=4, spins_in=(0, 1), spins_out=(0,), num_filter_params=2),
            (2, 8, 8, 2, 3),
            (2, 8, 8, 1, 4),
            2 * 2 * 1 * 3 * 4 * 2,
        ),
        (
            dict(filters=2, spins_in=(0,), spins_out=(0,), pooling="spectral"),
            (2, 16, 16, 1, 3),
            (2, 8, 8, 1, 2),
            2 * 4 * 1 * 1 * 3 * 2,
        ),
        (
            dict(filters=2, spins_in=(1,), spins_out=(1,), upsampling=True),
            (2, 8, 8, 1, 3),
            (2, 16, 16, 1, 2),
            2 * 4 * 3 * 2,
        ),
        (
            dict(
                filters=2,
                spins_in=(0,),
                spins_out=(0, 2),
                output_representation="spectral",
                use_bias=True,
            ),
            (2, 8, 8, 1, 3),
            (2, 4, 7, 2, 2),
            2 * 4 * 2 * 3 * 2 + 2 * 2,
        ),
        (
            dict(
                filters=2,
                spins_in=(0,),
                spins_out=(0,),
                input_representation="spectral",
            ),
            (2, 4, 7, 1, 3),
            (2, 8, 8, 1, 2),
            2 * 4 * 3 * 2,
        ),
        (
            dict(filters=2, spins_in=(0,), spins_out=(0, 1)),
            (2, 12, 20, 1, 1),
            (2, 12, 20, 2, 2),
            2 * 10 * 2 * 2,
        ),
    ],
)
def test_layer_contract(rng, kwargs, input_shape, output_shape, params):
    dtype = (
        "complex64" if kwargs.get("input_representation") == "spectral" else "float32"
    )
    data = rng.standard_normal(input_shape).astype(np.float32)
    if dtype == "complex64":
        data = (data + 1j * rng.standard_normal(input_shape)).astype(np.complex64)
    output = run_layer_test(
        SpinSphericalConv,
        kwargs,
        data,
        output_shape,
        expected_num_trainable_weights=4 if kwargs.get("use_bias") else 2,
        expected_num_non_trainable_weights=0,
        expected_num_params=params,
    )
    assert output.dtype == np.complex64


def conv_equivariance(rng, kwargs, grid, spins_in, spatial_out=True, n_rotations=3):
    layer = SpinSphericalConv(**kwargs)
    inputs = random_spatial_input(rng, grid, spins_in, batch=2, channels=2)
    layer(inputs)
    randomize_weights(layer, rng)
    out_shape = layer.compute_output_shape(inputs.shape)
    grid_out = Grid(out_shape[1], out_shape[2])
    spins_out = layer.spins_out
    rotations = [random_rotation(rng) for _ in range(n_rotations)]
    rotate_in = [lambda x, r=r: rotate_spatial(x, grid, spins_in, r) for r in rotations]
    if spatial_out:
        rotate_out = [
            lambda y, r=r: rotate_spatial(y, grid_out, spins_out, r) for r in rotations
        ]
    else:
        rotate_out = [lambda y, r=r: rotate_spectral(y, r) for r in rotations]
    return assert_equivariant(layer, inputs, rotate_in, rotate_out, EXACT, str(kwargs))


@pytest.mark.parametrize(
    "spins_in, spins_out",
    [((0,), (0, 1, 2)), ((1,), (1,)), ((0, 1), (0,)), ((0, 1), (1,)), ((-2,), (0, 2))],
)
def test_so3_equivariance_spin_combinations(rng, spins_in, spins_out):
    grid = Grid.for_bandlimit(7)
    kwargs = dict(
        filters=2, spins_in=spins_in, spins_out=spins_out, use_bias=0 in spins_out
    )
    conv_equivariance(rng, kwargs, grid, spins_in)


@pytest.mark.parametrize(
    "options",
    [
        dict(pooling="spectral"),
        dict(upsampling=True),
        dict(num_filter_params=3),
        dict(output_representation="spectral", use_bias=True),
    ],
)
def test_so3_equivariance_options(rng, options):
    grid = Grid.for_bandlimit(7)
    kwargs = dict(filters=2, spins_in=(0, 1), spins_out=(0, 1), **options)
    conv_equivariance(
        rng,
        kwargs,
        grid,
        (0, 1),
        spatial_out=options.get("output_representation") != "spectral",
    )


def test_so3_equivariance_rectangular_grid(rng):
    grid = Grid(12, 20)
    conv_equivariance(rng, dict(filters=2, spins_in=(0,), spins_out=(0, 1)), grid, (0,))


def test_spectral_input_equivariance(rng):
    layer = SpinSphericalConv(
        2,
        (0, 1),
        (0, 1),
        input_representation="spectral",
        output_representation="spectral",
        use_bias=True,
    )
    coeffs = rng.standard_normal((2, 6, 11, 2, 3)) + 1j * rng.standard_normal(
        (2, 6, 11, 2, 3)
    )
    from keras_sphere.layers.spins import validity_mask

    coeffs = (coeffs * validity_mask(5, (0, 1))).astype(np.complex64)
    layer(coeffs)
    randomize_weights(layer, rng)
    rotations = [random_rotation(rng) for _ in range(3)]
    rotate = [lambda a, r=r: rotate_spectral(a, r) for r in rotations]
    assert_equivariant(layer, coeffs, rotate, rotate, EXACT, "spectral in/out")


def test_exact_grid_symmetries(rng):
    grid = Grid.for_bandlimit(7)
    layer = SpinSphericalConv(3, (0, 1), (0, 1, 2), use_bias=True)
    inputs = random_spatial_input(rng, grid, (0, 1), channels=2)
    layer(inputs)
    randomize_weights(layer, rng)
    assert_equivariant(
        layer,
        inputs,
        [lambda x: roll_spatial(x, 5), lambda x: flip_spatial(x, (0, 1))],
        [lambda y: roll_spatial(y, 5), lambda y: flip_spatial(y, (0, 1, 2))],
        EXACT,
        "grid symmetries",
    )


def test_localized_with_all_anchors_equals_full(rng):
    inputs = rng.standard_normal((2, 8, 8, 1, 2)).astype(np.float32)
    full = SpinSphericalConv(3, (0,), (0, 1))
    local = SpinSphericalConv(3, (0,), (0, 1), num_filter_params=4)
    full(inputs)
    local(inputs)
    randomize_weights(local, rng)
    for name in ("kernel_real", "kernel_imag"):
        value = np.asarray(getattr(local, name).value)  # [i, o, c, d, p]
        getattr(full, name).assign(np.moveaxis(value, -1, 0))
    np.testing.assert_allclose(full(inputs), local(inputs), atol=1e-6)
    np.testing.assert_allclose(localized_interpolation(3, 4), np.eye(4))


def test_real_and_complex_spin0_input_agree(rng):
    inputs = rng.standard_normal((2, 8, 8, 1, 2)).astype(np.float32)
    layer = SpinSphericalConv(2, (0,), (0,))
    np.testing.assert_allclose(
        layer(inputs), layer(inputs.astype(np.complex64)), atol=1e-6
    )


def test_bias_is_a_constant_field(rng):
    layer = SpinSphericalConv(
        2, (0,), (0, 1), use_bias=True, kernel_initializer="zeros"
    )
    inputs = rng.standard_normal((1, 8, 8, 1, 1)).astype(np.float32)
    layer(inputs)
    layer.bias_real.assign(np.array([1.5, -2.0], np.float32))
    layer.bias_imag.assign(np.array([0.5, 0.0], np.float32))
    output = np.asarray(layer(inputs))
    np.testing.assert_allclose(
        output[..., 0, :], np.broadcast_to([1.5 + 0.5j, -2.0], (1, 8, 8, 2)), atol=1e-6
    )
    np.testing.assert_allclose(output[..., 1, :], 0, atol=1e-6)


def test_gradients_reach_every_weight(rng):
    import jax
    import jax.numpy as jnp

    layer = SpinSphericalConv(2, (0, 1), (0, 1), use_bias=True, num_filter_params=2)
    inputs = random_spatial_input(rng, Grid(8, 8), (0, 1), channels=2)
    layer(inputs)

    def loss(values):
        for weight, value in zip(layer.trainable_weights, values, strict=True):
            weight.assign(value)
        return jnp.sum(jnp.abs(layer(inputs)) ** 2)

    values = [w.value for w in layer.trainable_weights]
    trainable, non_trainable = layer.trainable_variables, layer.non_trainable_variables
    out, grads = jax.value_and_grad(
        lambda t: jnp.sum(
            jnp.abs(
                layer.stateless_call(t, [v.value for v in non_trainable], inputs)[0]
            )
            ** 2
        )
    )(values)
    del loss, trainable
    assert np.isfinite(float(out))
    for grad in grads:
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_save_and_load_in_fresh_process(rng, tmp_path):
    import keras

    inputs = keras.Input((8, 8, 1, 2))
    x = SpinSphericalConv(3, (0,), (0, 1), num_filter_params=2)(inputs)
    x = SpinSphericalConv(2, (0, 1), (0,), pooling="spectral", use_bias=True)(x)
    from keras_sphere.testing import power_head

    model = keras.Model(inputs, power_head()(x))
    data = rng.standard_normal((2, 8, 8, 1, 2)).astype(np.float32)
    run_model_saving_test(model, data, tmp_path)


def test_tables_are_state_not_weights_or_constants(rng):
    import jax

    layer = SpinSphericalConv(2, (0,), (0,))
    inputs = rng.standard_normal((2, 32, 32, 1, 1)).astype(np.float32)
    layer(inputs)
    assert layer.count_params() == 2 * 16 * 2
    table_values = [v for v in layer.non_trainable_variables]
    assert sum(int(np.prod(v.shape)) for v in table_values) > 1000
    assert layer.non_trainable_weights == []
    hlo = (
        jax.jit(lambda t, n, x: layer.stateless_call(t, n, x)[0])
        .lower(
            [v.value for v in layer.trainable_variables],
            [v.value for v in layer.non_trainable_variables],
            inputs,
        )
        .as_text()
    )
    import re

    sizes = [
        int(np.prod([int(d) for d in m.group(1).split("x")]))
        for m in re.finditer(r"dense<.*?> : tensor<([\dx]+)x\w+>", hlo)
    ]
    assert max(sizes, default=0) < 1000


def test_grid_the_layer_was_not_built_for():
    layer = SpinSphericalConv(2, (0,), (0,))
    layer(np.zeros((1, 8, 8, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"incompatible.*expected shape=\(None, 8, 8"):
        layer(np.zeros((1, 16, 16, 1, 1), np.float32))


def test_errors():
    with pytest.raises(ValueError, match="spin axis has 2 entries"):
        SpinSphericalConv(2, (0,), (0,))(np.zeros((1, 8, 8, 2, 1), np.float32))
    with pytest.raises(ValueError, match="rank-5"):
        SpinSphericalConv(2, (0,), (0,))(np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match="L \\+ 1 = 5, which is odd"):
        SpinSphericalConv(2, (0,), (0,), pooling="spectral")(
            np.zeros((1, 10, 10, 1, 1), np.float32)
        )
    with pytest.raises(ValueError, match="pooling and upsampling"):
        SpinSphericalConv(2, (0,), (0,), pooling="spectral", upsampling=True)
    with pytest.raises(ValueError, match="use_bias adds a constant spin-0 field"):
        SpinSphericalConv(2, (0,), (1,), use_bias=True)(
            np.zeros((1, 8, 8, 1, 1), np.float32)
        )
    with pytest.raises(ValueError, match="spins_in must list each spin once"):
        SpinSphericalConv(2, (0, 0), (0,))
    with pytest.raises(ValueError, match="num_filter_params=9 exceeds"):
        SpinSphericalConv(2, (0,), (0,), num_filter_params=9)(
            np.zeros((1, 8, 8, 1, 1), np.float32)
        )
