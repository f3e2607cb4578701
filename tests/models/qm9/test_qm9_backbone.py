import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import keras_sphere  # noqa: F401
from keras_sphere.models.qm9 import QM9Backbone

TINY = {
    "widths": (4, 6, 6, 8, 8),
    "resolutions": (16, 8, 8, 4, 4),
    "num_filter_params": (4, 4, 4, None, None),
}


# Every call below uses 5 molecules padded to 29 atoms: eager JAX compiles each
# op once per shape, so one shape for all tests saves a recompile per test.
MOLECULES = 5


def inputs(positions, charges):
    return {"positions": positions, "charges": charges}


@pytest.fixture(scope="module")
def backbones():
    """The same weights with 12 slots per molecule (packed) and 29 (padded)."""
    packed = QM9Backbone(**TINY, atoms_per_molecule=12)
    full = QM9Backbone(**TINY, atoms_per_molecule=29)
    rng = np.random.default_rng(0)
    # Non-trivial batch-norm statistics and scales, so masking errors would show.
    for weight in packed.weights:
        value = np.asarray(weight)
        if value.dtype.kind == "f":
            weight.assign(value + 0.1 * rng.normal(size=value.shape))
    full.set_weights(packed.get_weights())
    return packed, full


@pytest.mark.parametrize("training", [False, True])
def test_packed_equals_padded(backbones, make_molecules, training):
    # Packing the real atoms into fewer slots changes nothing: empty slots carry
    # zero batch-norm weight and are never scattered back.
    packed, full = backbones
    positions, charges = make_molecules(np.random.default_rng(1), MOLECULES, 3, 12)
    a = np.asarray(packed(inputs(positions, charges), training=training))
    b = np.asarray(full(inputs(positions, charges), training=training))
    assert a.shape == (MOLECULES, 29, 16)
    assert np.all(a[charges == 0] == 0)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


def test_overflow_gives_nan_not_a_wrong_answer(backbones, make_molecules):
    packed, _ = backbones
    # 5 molecules of 13+ atoms overflow the 5 x 12 packed slots.
    positions, charges = make_molecules(np.random.default_rng(2), MOLECULES, 13, 29)
    out = np.asarray(packed(inputs(positions, charges)))
    assert np.isnan(out).all()


def test_rotation_invariant_features(backbones, make_molecules):
    # Invariant up to the featuriser's 16 x 16 sampling and the nonlinearities'
    # aliasing; a random rotation measured 0.15-0.2% of the features' RMS here,
    # against ~100% for unrelated inputs. The bound leaves 10x headroom for
    # other CPUs and seeds.
    _, full = backbones
    positions, charges = make_molecules(np.random.default_rng(3), MOLECULES, 8, 16)
    rotation = Rotation.random(random_state=4).as_matrix().astype(np.float32)
    a = np.asarray(full(inputs(positions, charges)))
    b = np.asarray(full(inputs(positions @ rotation.T, charges)))
    scale = np.sqrt(np.mean(a[charges > 0] ** 2))
    error = np.sqrt(np.mean((a - b)[charges > 0] ** 2)) / scale
    print(f"relative RMS change under rotation: {error:.3g}")
    assert error < 0.02
    shuffled = np.sqrt(np.mean((a - a[::-1]) ** 2)) / scale
    assert shuffled > 5 * error


def test_config_round_trip_and_errors():
    backbone = QM9Backbone(**TINY, atoms_per_molecule=20)
    clone = QM9Backbone.from_config(backbone.get_config())
    assert clone.widths == TINY["widths"]
    assert clone.atom_capacity(16) == 320
    assert clone.feature_width == 16
    with pytest.raises(ValueError, match="one entry per block"):
        QM9Backbone(widths=(4, 4), resolutions=(16,), num_filter_params=(4,))
    with pytest.raises(ValueError, match="equal or halve"):
        QM9Backbone(widths=(4, 4), resolutions=(16, 12), num_filter_params=(4, 4))
