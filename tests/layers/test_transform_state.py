"""TransformState: dense matrices and SHT plans give the same transforms."""

import keras
import numpy as np
import pytest

from keras_sphere.layers.transform_state import DENSE_MAX_SIZE
from keras_sphere.layers.transform_state import TransformState
from keras_sphere.sphere import Grid


def _pair(grid, ell_max, spins):
    """The same transform state built both ways, on throwaway layers."""
    return [
        TransformState(keras.layers.Layer(), grid, ell_max, spins, "t", method=method)
        for method in ("plan", "dense")
    ]


def _relative_error(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(b).max())


@pytest.mark.parametrize("n_lat, n_lon, ell_max", [(8, 8, 3), (16, 16, 7), (9, 16, 3)])
@pytest.mark.parametrize("spins", [(0,), (0, 1), (1, 0, -2)])
def test_dense_equals_plan(rng, n_lat, n_lon, ell_max, spins):
    # Both are float32 evaluations of the same linear maps (tables built in float64):
    # they agree to float32 round-off, bound 1e-5 relative.
    grid = Grid(n_lat, n_lon)
    plan, dense = _pair(grid, ell_max, spins)
    assert (plan.method, dense.method) == ("plan", "dense")
    shape = (2, n_lat, n_lon, len(spins), 3)
    field = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    expected = plan.to_spectral(field, spins)
    assert _relative_error(dense.to_spectral(field, spins), expected) < 1e-5
    coeffs = np.asarray(expected)
    assert (
        _relative_error(dense.to_spatial(coeffs, spins), plan.to_spatial(coeffs, spins))
        < 1e-5
    )


def test_dense_real_spin_zero_paths(rng):
    grid = Grid(16, 16)
    plan, dense = _pair(grid, 7, (0,))
    field = rng.normal(size=(2, 16, 16, 1, 4)).astype(np.float32)
    coeffs = plan.to_spectral(field, (0,))
    assert _relative_error(dense.to_spectral(field, (0,)), coeffs) < 1e-5
    spatial = dense.to_spatial(coeffs, (0,), is_real=True)
    assert spatial.dtype == np.float32
    assert _relative_error(spatial, plan.to_spatial(coeffs, (0,), is_real=True)) < 1e-5
    # Band-limited real field: the round trip gives it back.
    assert _relative_error(spatial, plan.to_spatial(coeffs, (0,)).real) < 1e-5


def test_method_choice_and_errors():
    layer = keras.layers.Layer()
    small = TransformState(layer, Grid(16, 16), 7, (0,), "small")
    assert small.method == "dense"
    assert 16 * 16 * 8**2 <= DENSE_MAX_SIZE < 64 * 64 * 32**2
    large = TransformState(layer, Grid(64, 64), 31, (0,), "large")
    assert large.method == "plan"
    large.plan(0)
    with pytest.raises(ValueError, match="dense matrices"):
        small.plan(0)
    with pytest.raises(ValueError, match="method must be one of"):
        TransformState(layer, Grid(8, 8), 3, (0,), "bad", method="fft")
    # Tables are state, not weights: nothing counted, nothing saved.
    assert not layer.weights


def test_plan_transforms_in_chunks_equal_whole_batch(rng, monkeypatch):
    # A 16 x 16 spin-0/1 field of 3 channels is 12 KB per example as complex64: with
    # CHUNK_BYTES = 2 examples' worth, a batch of 6 runs as a loop of 3 chunks.
    # Same float32 operations per example, so the results agree to round-off (1e-6).
    import jax

    from keras_sphere.layers import batch_chunks

    grid, spins = Grid(16, 16), (0, 1)
    state = TransformState(keras.layers.Layer(), grid, 7, spins, "t", method="plan")
    shape = (6, 16, 16, 2, 3)
    field = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)

    def loss(x):
        coeffs = state.to_spectral(x, spins)
        return jax.numpy.sum(jax.numpy.abs(state.to_spatial(coeffs, spins)) ** 2)

    whole_coeffs = state.to_spectral(field, spins)
    whole_grad = jax.grad(loss)(field)
    monkeypatch.setattr(batch_chunks, "CHUNK_BYTES", 2 * 16 * 16 * 2 * 3 * 8)
    chunked = jax.make_jaxpr(lambda x: state.to_spectral(x, spins))(field)
    assert "scan" in str(chunked)  # the chunked path ran (lax.map is a scan)
    assert _relative_error(state.to_spectral(field, spins), whole_coeffs) < 1e-6
    assert _relative_error(jax.grad(loss)(field), whole_grad) < 1e-6
    # Accelerators take the batch whole (a loop would serialise tiny kernels).
    monkeypatch.setattr(batch_chunks, "CHUNKED_PLATFORMS", ("gpu",))
    whole = jax.make_jaxpr(lambda x: state.to_spectral(x, spins))(field)
    assert "scan" not in str(whole)


def _raise_once(monkeypatch, owner, name, error):
    """Replace owner.name by a function that raises `error` on its first call only."""
    original = getattr(owner, name)
    calls = []

    def patched(*args, **kwargs):
        calls.append(None)
        if len(calls) == 1:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, patched)
    return calls


@pytest.mark.parametrize("method_name", ["_plan_forward", "_plan_inverse"])
def test_exception_inside_a_transform_leaves_the_layer_usable(
    rng, monkeypatch, method_name
):
    # 32 x 32 at L = 15 runs on the plans. An error inside a transform of a built
    # layer must not leave anything behind: the next call gives the same output.
    from keras_sphere.layers import SpinSphericalConv

    conv = SpinSphericalConv(4, spins_in=(0,), spins_out=(0, 1))
    x = rng.normal(size=(2, 32, 32, 1, 3)).astype("float32")
    expected = np.asarray(conv(x))
    assert conv._forward_tables.method == "plan"
    calls = _raise_once(
        monkeypatch, TransformState, method_name, RuntimeError("transform failed")
    )
    with pytest.raises(RuntimeError, match="transform failed"):
        conv(x)
    np.testing.assert_array_equal(np.asarray(conv(x)), expected)
    assert len(calls) == 2


def test_exception_while_making_tables_leaves_the_layer_usable(rng, monkeypatch):
    # Making the tables can fail (memory at large bandlimits, an interrupt). They are
    # made at the first call, not in build: the call raises, the next one makes them
    # and gives what a fresh layer with the same weights gives.
    from keras_sphere.layers import SpinSphericalConv
    from keras_sphere.layers import transform_state

    # A grid no other test uses: the tables must not exist yet (they are shared).
    conv = SpinSphericalConv(4, spins_in=(0,), spins_out=(0, 1))
    x = rng.normal(size=(2, 30, 30, 1, 3)).astype("float32")
    calls = _raise_once(
        monkeypatch, transform_state, "plan_arrays", MemoryError("no room")
    )
    with pytest.raises(MemoryError, match="no room"):
        conv(x)
    out = conv(x)
    assert len(calls) >= 2
    fresh = SpinSphericalConv(4, spins_in=(0,), spins_out=(0, 1))
    fresh.build(x.shape)
    assert len(conv.variables) == len(fresh.variables)
    fresh.set_weights(conv.get_weights())
    np.testing.assert_array_equal(np.asarray(out), np.asarray(fresh(x)))


def _tables(layer):
    return [v for v in layer.non_trainable_variables if "table" in v.path]


def test_tables_are_declared_in_build_and_made_at_the_first_call(rng):
    from keras_sphere.layers import SpinSphericalConv

    # A grid no other test uses: the tables must not exist yet (they are shared).
    inputs = keras.Input((34, 34, 1, 2))
    conv = SpinSphericalConv(3, (0,), (0, 1))
    model = keras.Model(inputs, conv(inputs))
    assert _tables(conv) and not any(t.has_value for t in _tables(conv))
    assert conv.count_params() == sum(int(np.prod(w.shape)) for w in conv.weights)
    model.predict(rng.normal(size=(2, 34, 34, 1, 2)).astype("float32"), verbose=0)
    assert all(t.has_value for t in _tables(conv))


def test_layers_and_models_share_one_copy_of_each_table(rng):
    from keras_sphere.layers import SpinSphericalConv

    def model():
        inputs = keras.Input((32, 32, 1, 1))
        x = SpinSphericalConv(2, (0,), (0,))(inputs)
        x = SpinSphericalConv(2, (0,), (0,))(x)
        return keras.Model(inputs, x)

    first, second = model(), model()
    tables = [_tables(layer) for layer in (*first.layers[1:], *second.layers[1:])]
    assert tables[0]
    for other in tables[1:]:  # the same variables: 32 x 32, L = 15, spin 0
        assert [id(t) for t in other] == [id(t) for t in tables[0]]
    # Keras lists each variable once per model (one array in each compiled step).
    ids = [id(v) for v in first.variables]
    assert len(ids) == len(set(ids))
    x = rng.normal(size=(2, 32, 32, 1, 1)).astype("float32")
    expected = first.predict(x, verbose=0)
    # predict donates the state to its compiled step: the shared tables stay valid.
    # Same float32 operations, compiled separately or run eagerly: 1e-5.
    second.set_weights(first.get_weights())
    np.testing.assert_allclose(second.predict(x, verbose=0), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(first(x)), expected, rtol=1e-5, atol=1e-6)
