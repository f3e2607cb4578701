"""Per-element reference sums: the ridge fit, the layer, and the regressor's use."""

import numpy as np
import pytest

import keras_sphere  # noqa: F401
from keras_sphere.models.qm9 import AtomReference
from keras_sphere.models.qm9 import QM9Backbone
from keras_sphere.models.qm9 import QM9Regressor
from keras_sphere.models.qm9 import atom_counts
from keras_sphere.models.qm9 import fit_atom_reference

TINY = {
    "widths": (4, 6, 6, 8, 8),
    "resolutions": (16, 8, 8, 4, 4),
    "num_filter_params": (4, 4, 4, None, None),
}
PER_ATOM = [-0.5, -37.8, -54.6, -75.1, -99.7]  # ~ QM9's free-atom energies (Ha)


def test_fit_recovers_exact_per_element_values(make_molecules):
    _, charges = make_molecules(np.random.default_rng(0), 200)
    labels = {"U0": atom_counts(charges) @ PER_ATOM + 0.25}
    values, intercept = fit_atom_reference(charges, labels, alpha=1e-12)
    # float64 normal equations of a well-conditioned 6 x 6 system: ~1e-12.
    np.testing.assert_allclose(values["U0"], PER_ATOM, atol=1e-9)
    assert intercept["U0"] == pytest.approx(0.25, abs=1e-9)
    with pytest.raises(ValueError, match="one per molecule"):
        fit_atom_reference(charges, {"U0": np.zeros(3)})


def test_layer_sums_values_over_real_atoms(make_molecules):
    _, charges = make_molecules(np.random.default_rng(1), 5)
    out = np.asarray(AtomReference(PER_ATOM)(charges))
    assert out.shape == (5, 1)
    expected = atom_counts(charges) @ PER_ATOM  # padding (charge 0) counts nothing
    # float32 sums of ~1e3 Ha: relative 1e-7.
    np.testing.assert_allclose(out[:, 0], expected, rtol=2e-7)
    with pytest.raises(ValueError, match="5 finite values"):
        AtomReference([1.0, 2.0])
    with pytest.raises(ValueError, match="5 finite values"):
        AtomReference([1.0, 2.0, np.nan, 0.0, 0.0])


def test_regressor_adds_reference_to_the_destandardised_tail(make_molecules):
    backbone = QM9Backbone(**TINY, atoms_per_molecule=29)
    model = QM9Regressor(
        backbone,
        targets=("H", "mu"),
        tail_width=8,
        label_mean={"H": 0.1, "mu": 2.0},
        label_std={"H": 0.02, "mu": 1.0},
        atom_reference={"H": PER_ATOM},
    )
    model = QM9Regressor.from_config(model.get_config())  # the config carries it
    for layer in model.layers:
        if layer.name.startswith("tail_"):
            for weight in layer.weights:
                weight.assign(np.zeros(weight.shape, weight.dtype))
    positions, charges = make_molecules(np.random.default_rng(2), 3)
    out = model.predict((positions, charges), verbose=0)
    expected = atom_counts(charges) @ PER_ATOM + 0.1
    np.testing.assert_allclose(out["H"], expected, rtol=2e-7)
    np.testing.assert_allclose(out["mu"], 2.0, atol=1e-6)  # no reference: the mean
    with pytest.raises(ValueError, match="not among targets"):
        QM9Regressor(backbone, targets=("mu",), atom_reference={"H": PER_ATOM})
