"""Every built-in preset loads by name and reproduces its stored reference output.

Each preset folder has a reference.json: how to regenerate a fixed sample input and
the probabilities the trained model gave for it when it was saved. Loading runs the
full model (cmb_1024: 2048 x 2048 maps through the scattering layer, about 7 GB and
a minute on 2 CPU cores), so these tests are marked large.
"""

import gc
import json

import numpy as np
import pytest

from keras_sphere import zoo
from keras_sphere.sphere import clear_cache
from keras_sphere.zoo.presets import BUILTIN_PRESETS
from keras_sphere.zoo.presets import builtin_directory


def sample_input(name: str, reference: dict) -> np.ndarray:
    task = BUILTIN_PRESETS[name]["task"]
    if task == "CMBClassifier":
        from keras_sphere.data.cmb import CMBSimulator

        simulator = CMBSimulator(**reference["simulator"])
        maps, labels = simulator.maps(reference["split"], reference["indices"])
        assert labels.tolist() == reference["labels"]
        return maps
    if task == "QM9Regressor":
        from keras_sphere.data import qm9

        test = qm9.load(reference["split"], reference["config"], verbose=0)
        rows = reference["rows"]
        return {"positions": test["positions"][rows], "charges": test["charges"][rows]}
    if task.endswith("WeatherForecaster"):
        return zoo.load_sample(name, reference["sample"]).isel(time=[0])
    raise AssertionError(f"no sample input defined for task {task}")


@pytest.mark.parametrize("name", sorted(BUILTIN_PRESETS))
def test_builtin_preset_is_listed_with_its_card(name):
    info = zoo.list_presets()[name]
    assert info["parameters"] > 0 and info["metrics"], info
    assert "Held-out metrics" in zoo.card(name, show=False)


@pytest.mark.parametrize("name", sorted(BUILTIN_PRESETS))
def test_builtin_preset_loads_without_making_transform_tables(name, monkeypatch):
    # Loading builds the model and reads its weights; the transform tables (2.5 GB
    # for cmb_1024) are declared only, and made by the first call that runs them.
    # Tables are shared by every live layer on the same grid, so an earlier test's
    # model may still hold them made: what loading must not do is make them.
    from keras_sphere.layers import transform_state

    fills = []
    monkeypatch.setattr(
        transform_state._SharedTables, "fill", lambda tables: fills.append(tables.key)
    )
    model = zoo.load(name)
    tables = [v for v in model.non_trainable_variables if "table" in v.path]
    assert tables and not fills
    # Weights drawn lazily were given by the weights file instead.
    assert all(getattr(weight, "has_value", True) for weight in model.weights)


@pytest.mark.large
@pytest.mark.parametrize("name", sorted(BUILTIN_PRESETS))
def test_builtin_preset_reproduces_reference(name):
    reference = json.loads((builtin_directory(name) / "reference.json").read_text())
    sample = sample_input(name, reference)
    # The simulator's transform plans (about 5 GB at L = 1023) are not needed by the
    # model: free them before it builds its own.
    clear_cache()
    gc.collect()
    model = zoo.load(name)
    if BUILTIN_PRESETS[name]["task"] == "QM9Regressor":
        predictions = model.predict(sample, verbose=0)
        for target, expected in reference["predictions"].items():
            scale = model.label_std[target]
            np.testing.assert_allclose(
                predictions[target], expected, atol=reference["rtol"] * scale
            )
        return
    if BUILTIN_PRESETS[name]["task"].endswith("WeatherForecaster"):
        from keras_sphere import weather

        forecast = weather.forecast(model, sample, reference["lead"])
        field = forecast[reference["variable"]].isel(time=0, prediction_timedelta=-1)
        field = field.sel(level=reference["level"]).values
        values = [field[i, j] for i, j in reference["points"]]
        np.testing.assert_allclose(values, reference["values"], atol=reference["atol"])
        return
    probabilities = model.predict(sample, batch_size=2, verbose=0)
    # atol 0.01 (keras-hub's preset tests): float32 transforms of 4 M pixels may
    # round differently on other CPUs; measured differences here are ~1e-6.
    np.testing.assert_allclose(
        probabilities, reference["probabilities"], atol=reference["atol"]
    )


# The multi-target preset runs in CI: every head and the whole predict path. The
# others take the same path with fewer heads (their weights are checked on held-out
# rows by test_builtin_preset_reproduces_reference), so their 3-minute full-split
# checks run with --run_extra_large.
QM9_PRESETS = [
    name if name == "qm9" else pytest.param(name, marks=pytest.mark.extra_large)
    for name, spec in sorted(BUILTIN_PRESETS.items())
    if spec["task"] == "QM9Regressor"
]


@pytest.mark.large
@pytest.mark.parametrize("name", QM9_PRESETS)
def test_qm9_preset_reproduces_its_card(name):
    # The card's test-split MAEs, recomputed from the shipped preset (dimenet test
    # split, 10,831 molecules; about 3 minutes on 2 CPU cores).
    from keras_sphere.data import qm9
    from keras_sphere.models.qm9 import TARGETS

    metrics = json.loads((builtin_directory(name) / "metrics.json").read_text())
    test = qm9.load("test", "dimenet", verbose=0)
    model = zoo.load(name)
    predictions = model.predict(
        {"positions": test["positions"], "charges": test["charges"]}, verbose=0
    )
    assert sorted(predictions) == sorted(metrics["mae"])
    for target, card_mae in metrics["mae"].items():
        recipe = TARGETS[target]
        error = np.abs(predictions[target] - test[recipe["label"]])
        mae = float(np.mean(error)) * recipe["report_scale"]
        np.testing.assert_allclose(mae, card_mae, rtol=1e-3)
