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
    raise AssertionError(f"no sample input defined for task {task}")


@pytest.mark.parametrize("name", sorted(BUILTIN_PRESETS))
def test_builtin_preset_is_listed_with_its_card(name):
    info = zoo.list_presets()[name]
    assert info["parameters"] > 0 and info["metrics"], info
    assert "Held-out metrics" in zoo.card(name, show=False)


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
    probabilities = model.predict(sample, batch_size=2, verbose=0)
    # atol 0.01 (keras-hub's preset tests): float32 transforms of 4 M pixels may
    # round differently on other CPUs; measured differences here are ~1e-6.
    np.testing.assert_allclose(
        probabilities, reference["probabilities"], atol=reference["atol"]
    )
