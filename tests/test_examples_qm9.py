"""examples/qm9_predict.py runs end to end on each shipped QM9 preset."""

import importlib.util
import pathlib

import numpy as np
import pytest

from keras_sphere.zoo.presets import BUILTIN_PRESETS

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "qm9_predict.py"
QM9_PRESETS = sorted(
    name for name, spec in BUILTIN_PRESETS.items() if spec["task"] == "QM9Regressor"
)


@pytest.mark.large
@pytest.mark.parametrize("preset", QM9_PRESETS)
def test_qm9_predict_example(preset, capsys):
    spec = importlib.util.spec_from_file_location("qm9_predict", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--preset", preset, "--smiles", "CCO", "--test-molecules", "2"]
    predictions = module.main(argv)
    assert predictions["H"].shape == (3,) and np.isfinite(predictions["H"]).all()
    printed = capsys.readouterr().out
    assert "CCO" in printed and "QM9 #" in printed and " eV" in printed
