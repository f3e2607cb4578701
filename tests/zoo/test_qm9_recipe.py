"""The qm9 recipe's restart from the shipped preset when its run directory is lost."""

import importlib
import json
import sys

import keras
import numpy as np
import pytest

import keras_sphere
from keras_sphere.zoo.presets import builtin_directory


@pytest.fixture
def recipe():
    directory = builtin_directory("qm9")
    if not (directory / "train.py").exists():
        pytest.skip("the recipes are in the source checkout only")
    sys.path.insert(0, str(directory))
    try:
        yield importlib.import_module("train")
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop("train", None)


def test_a_lost_run_continues_from_the_shipped_preset(recipe, tmp_path):
    from keras_sphere.models.qm9 import TARGET_NAMES

    shipped = json.loads((builtin_directory("qm9") / "metrics.json").read_text())
    model = recipe.build_model(TARGET_NAMES, None, None)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    before = [np.array(w) for w in model.get_weights()]

    recipe._continue_shipped_preset(model, "qm9", tmp_path)

    reference = keras_sphere.zoo.load("qm9")
    changed = False
    for ours, theirs, initial in zip(
        model.get_weights(), reference.get_weights(), before, strict=True
    ):
        np.testing.assert_array_equal(ours, theirs)
        changed |= not np.array_equal(ours, initial)
    assert changed  # the shipped weights replaced the fresh initialisation
    steps = shipped["training"]["steps"]
    assert int(model.optimizer.iterations.value) == steps  # the schedule goes on
    inherited = recipe._inherited(tmp_path)
    assert inherited["steps"] == steps
    assert inherited["keras_epochs"] == shipped["training"]["keras_epochs"]
    assert inherited["wall_seconds"] == pytest.approx(
        3600 * shipped["training"]["wall_hours"]
    )
    assert recipe._inherited(tmp_path / "elsewhere") == {}
