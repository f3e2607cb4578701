"""Layer helpers: a build that raises leaves the layer as it was (atomic_build)."""

import keras
import numpy as np
import pytest

from keras_sphere import layers


def state_counts(layer):
    """Weights and registered transform tables of a layer and its sub-layers."""
    return len(layer.weights), len(layer.variables)


def test_rejected_shape_does_not_pin_the_input_spec(rng):
    # The input spec used to be fixed before the shape was checked: after one wrong
    # call, every right one was refused as "incompatible" with the wrong shape.
    conv = layers.SpinSphericalConv(4, spins_in=(0,), spins_out=(0, 1))
    with pytest.raises(ValueError, match=r"2 entries but spins_in=\(0,\)"):
        conv(np.ones((2, 32, 32, 2, 1), "float32"))
    with pytest.raises(ValueError, match="expects a rank-5 input"):
        conv(np.ones((2, 32, 32, 1), "float32"))
    assert not conv.built and conv.input_spec is None
    assert state_counts(conv) == (0, 0)
    out = conv(rng.normal(size=(2, 32, 32, 1, 3)).astype("float32"))
    assert out.shape == (2, 32, 32, 2, 4)
    fresh = layers.SpinSphericalConv(4, spins_in=(0,), spins_out=(0, 1))
    fresh.build((None, 32, 32, 1, 3))
    assert state_counts(conv) == state_counts(fresh)


def test_failure_after_weights_were_created_removes_them():
    # output_grid is checked after the kernels exist: the half-built layer is undone.
    conv = layers.SpinSphericalConv(4, output_grid=(16, 16))
    with pytest.raises(ValueError, match="too large for a 16 x 16 grid"):
        conv(np.ones((2, 32, 32, 1, 1), "float32"))
    assert not conv.built and conv.input_spec is None
    assert state_counts(conv) == (0, 0)
    # The same layer takes a grid its output grid can hold, with one set of kernels.
    assert conv(np.ones((2, 16, 16, 1, 1), "float32")).shape == (2, 16, 16, 1, 4)
    assert [w.name for w in conv.weights] == ["kernel_real", "kernel_imag"]


def test_failed_block_build_unbuilds_its_sub_layers(monkeypatch):
    # SphericalResBlock builds its convolutions and norms one by one; a failure
    # half-way (here: an interrupt in the second phase collapse) must unbuild the
    # ones already built, or the next build would give them a second set of weights.
    original = layers.PhaseCollapse.build
    calls = {"count": 0}

    def build_second_fails(self, input_shape):
        calls["count"] += 1
        if calls["count"] == 2:
            raise KeyboardInterrupt
        return original(self, input_shape)

    monkeypatch.setattr(layers.PhaseCollapse, "build", build_second_fails)
    block = layers.SphericalResBlock(4, (0, 1))
    shape = (None, 16, 16, 2, 4)
    with pytest.raises(KeyboardInterrupt):
        block.build(shape)
    assert not block.built
    assert not any(sub.built for sub in block._flatten_layers(include_self=False))
    assert state_counts(block) == (0, 0)
    block.build(shape)
    monkeypatch.undo()
    fresh = layers.SphericalResBlock(4, (0, 1))
    fresh.build(shape)
    assert state_counts(block) == state_counts(fresh)
    assert sorted(w.path.split("/", 1)[1] for w in block.weights) == sorted(
        w.path.split("/", 1)[1] for w in fresh.weights
    )
    x = np.ones((2, 16, 16, 2, 4), "complex64")
    assert keras.ops.shape(block(x)) == (2, 16, 16, 2, 4)


def test_failure_while_declaring_tables_removes_the_kernels(rng, monkeypatch):
    # The transform tables are declared after the kernels exist; a failure there
    # (memory, an interrupt) leaves the layer unbuilt, without those kernels or any
    # table registered, and the next call builds it afresh.
    from keras_sphere.layers.transform_state import TransformState

    original = TransformState.__init__

    def declare_fails_once(self, *args, **kwargs):
        monkeypatch.setattr(TransformState, "__init__", original)
        raise MemoryError("no room")

    monkeypatch.setattr(TransformState, "__init__", declare_fails_once)
    conv = layers.SpinSphericalConv(4, spins_in=(0,), spins_out=(0, 1))
    x = rng.normal(size=(2, 32, 32, 1, 3)).astype("float32")
    with pytest.raises(MemoryError, match="no room"):
        conv(x)
    assert not conv.built and conv.input_spec is None
    assert state_counts(conv) == (0, 0)
    out = conv(x)
    fresh = layers.SpinSphericalConv(4, spins_in=(0,), spins_out=(0, 1))
    fresh.build(x.shape)
    assert state_counts(conv) == state_counts(fresh)
    fresh.set_weights(conv.get_weights())
    np.testing.assert_array_equal(np.asarray(out), np.asarray(fresh(x)))
