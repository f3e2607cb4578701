import numpy as np
import pytest

import keras_sphere  # noqa: F401
from keras_sphere.models.qm9 import TARGET_NAMES
from keras_sphere.models.qm9 import TARGETS
from keras_sphere.models.qm9 import QM9Backbone
from keras_sphere.models.qm9 import QM9Regressor
from keras_sphere.models.qm9 import budget_layout
from keras_sphere.models.qm9 import check_molecules

TINY = {
    "widths": (4, 6, 6, 8, 8),
    "resolutions": (16, 8, 8, 4, 4),
    "num_filter_params": (4, 4, 4, None, None),
}


def test_every_target_has_a_recipe():
    assert len(TARGET_NAMES) == 12
    for name in TARGET_NAMES:
        recipe = TARGETS[name]
        assert recipe["tail"] in ("deepsets", "transformer")
        assert recipe["label"] and recipe["unit"]
    assert TARGETS["mu"]["aggregation"] == "weighted_displacement"
    assert TARGETS["r2"]["aggregation"] == "weighted_by_distance_squared"
    assert TARGETS["alpha"]["tail"] == "transformer"
    assert TARGETS["H"]["label"] == "H_atomization"


@pytest.fixture(scope="module")
def regressor():
    backbone = QM9Backbone(**TINY, atoms_per_molecule=14)
    mean = {name: 0.5 * i for i, name in enumerate(TARGET_NAMES)}
    std = {name: 1.0 + i for i, name in enumerate(TARGET_NAMES)}
    return QM9Regressor(backbone, tail_width=8, label_mean=mean, label_std=std)


def test_predict_batches_by_atoms_and_keeps_order(regressor, make_molecules):
    positions, charges = make_molecules(np.random.default_rng(0), 7, 3, 20)
    x = {"positions": positions, "charges": charges}
    out = regressor.predict(x, batch_size=4, verbose=0)
    assert set(out) == set(TARGET_NAMES)
    assert all(v.shape == (7,) and np.isfinite(v).all() for v in out.values())
    # One molecule at a time gives the same numbers (inference: no batch effects).
    for index in (0, 6):
        single = regressor.predict(
            (positions[index : index + 1], charges[index : index + 1]), verbose=0
        )
        np.testing.assert_allclose(single["H"], out["H"][index : index + 1], 1e-5)


def test_outputs_are_rescaled_labels(regressor, make_molecules):
    # With every tail weight zero, each output is its training-label mean.
    model = QM9Regressor.from_config(regressor.get_config())
    for layer in model.layers:
        if layer.name.startswith("tail_"):
            for weight in layer.weights:
                weight.assign(np.zeros(weight.shape, weight.dtype))
    positions, charges = make_molecules(np.random.default_rng(1), 2)
    out = model.predict((positions, charges), verbose=0)
    for index, name in enumerate(TARGET_NAMES):
        np.testing.assert_allclose(out[name], 0.5 * index, atol=1e-6)


def test_fit_step_and_loss_weights(make_molecules):
    backbone = QM9Backbone(**TINY, atoms_per_molecule=29)
    model = QM9Regressor(
        backbone, targets=("H", "mu"), tail_width=8, label_std=(0.4, 1.5)
    )
    model.compile(jit_compile=True)
    positions, charges = make_molecules(np.random.default_rng(2), 4)
    y = {"H": np.ones(4, np.float32), "mu": np.zeros(4, np.float32)}
    x = {"positions": positions, "charges": charges}
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert model._compile_loss._user_loss_weights == {"H": 1 / 0.4, "mu": 1 / 1.5}


def test_budget_layout_pads_batches_to_capacity():
    charges = np.zeros((5, 29), np.int32)
    for index, count in enumerate((10, 10, 5, 20, 1)):
        charges[index, :count] = 6
    x = {"positions": np.zeros((5, 29, 3), np.float32), "charges": charges}
    laid, y, weights = budget_layout(x, {"H": np.arange(5.0)}, 3, 25)
    # [10, 10, 5] | [20, 1, pad]: no batch above 25 atoms, order kept.
    assert weights.tolist() == [1, 1, 1, 1, 1, 0]
    assert y["H"][weights > 0].tolist() == [0, 1, 2, 3, 4]
    atoms = (laid["charges"] > 0).sum(axis=1).reshape(2, 3).sum(axis=1)
    assert atoms.tolist() == [25, 21]
    laid, _, weights = budget_layout(x, None, 3, 20)
    # [10, 10] | [5] (5 + 20 > 20) | [20] | [1]
    assert weights.tolist() == [1, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0]


def test_bad_molecules_are_named():
    positions = np.zeros((3, 29, 3), np.float32)
    charges = np.zeros((3, 29), np.int32)
    charges[:, :2] = 6
    positions[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"molecules \[1\] are not finite"):
        check_molecules((positions, charges))
    positions[1, 0, 0] = 0
    charges[2, 1] = 16
    with pytest.raises(ValueError, match=r"molecules \[2\] have atoms .* \[16\]"):
        check_molecules((positions, charges))
    with pytest.raises(ValueError, match=r"shape \(n, 29, 3\)"):
        check_molecules((positions[:, :5], charges))
    with pytest.raises(TypeError, match="Pass molecules as"):
        check_molecules(positions)


def test_bad_targets():
    backbone = QM9Backbone(**TINY)
    with pytest.raises(ValueError, match="targets must be distinct names"):
        QM9Regressor(backbone, targets=("H", "enthalpy"))
    with pytest.raises(ValueError, match="label_std must be positive"):
        QM9Regressor(backbone, targets=("H",), label_std=(0.0,))


def test_keras_file_round_trip(regressor, make_molecules, tmp_path):
    import keras

    path = tmp_path / "qm9.keras"
    regressor.save(path)
    loaded = keras.saving.load_model(path)
    positions, charges = make_molecules(np.random.default_rng(3), 3)
    a = regressor.predict((positions, charges), verbose=0)
    b = loaded.predict((positions, charges), verbose=0)
    for name in TARGET_NAMES:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-6, atol=1e-6)
