"""examples/qm9_predict.py runs end to end on the shipped qm9 preset."""

import importlib.util
import pathlib

import numpy as np
import pytest

from keras_sphere.zoo.presets import BUILTIN_PRESETS

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "qm9_predict.py"


@pytest.mark.large
def test_qm9_predict_example(capsys):
    if "qm9" not in BUILTIN_PRESETS:
        pytest.skip("the qm9 preset is not registered yet")
    spec = importlib.util.spec_from_file_location("qm9_predict", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    predictions = module.main(["--smiles", "CCO", "--test-molecules", "2"])
    assert predictions["H"].shape == (3,) and np.isfinite(predictions["H"]).all()
    printed = capsys.readouterr().out
    assert "CCO" in printed and "QM9 #" in printed and " eV" in printed
