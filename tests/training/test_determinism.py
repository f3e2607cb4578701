"""keras_sphere.training.determinism: set_seed, with and without TensorFlow."""

import os
import random
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_sphere import layers
from keras_sphere.training import set_seed
from keras_sphere.training.determinism import _set_seed_without_tensorflow


def draws():
    """One draw from every generator set_seed is responsible for."""
    return (
        random.random(),
        np.random.random(),  # noqa: NPY002  (the legacy global generator Keras uses)
        float(keras.random.normal(())),  # Keras' global SeedGenerator
    )


def test_set_seed_makes_draws_repeatable():
    set_seed(123)
    first = draws()
    set_seed(123)
    assert draws() == first
    set_seed(124)
    assert all(a != b for a, b in zip(draws(), first, strict=True))


def test_path_without_tensorflow_matches_keras_set_random_seed():
    # The private path copies keras.utils.set_random_seed (Keras 3.15); this catches
    # a Keras change that would make them differ.
    from keras.src.utils.rng_utils import get_random_seed

    keras.utils.set_random_seed(5)
    expected = draws()
    _set_seed_without_tensorflow(5)
    assert draws() == expected
    assert get_random_seed() == 5


def test_same_seed_builds_the_same_layer_weights():
    def weights():
        set_seed(9)
        conv = layers.SpinSphericalConv(3, (0,), (0, 1))
        conv.build((None, 8, 8, 1, 2))
        return [np.asarray(w.value) for w in conv.weights]

    first, second = weights(), weights()
    assert len(first) > 0
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_does_not_import_tensorflow_when_it_is_installed_but_unused(tmp_path):
    # A stand-in "tensorflow" package that fails loudly if imported.
    package = tmp_path / "tensorflow"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('tensorflow imported')\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        "import sys, importlib.util\n"
        "assert importlib.util.find_spec('tensorflow') is not None\n"
        "from keras_sphere.training import set_seed\n"
        "set_seed(3)\n"
        "print('tensorflow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "KERAS_BACKEND": "jax",
            "PYTHONPATH": os.pathsep.join([str(tmp_path), root]),
        },
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False"]


@pytest.mark.parametrize(
    "seed, error, match",
    [
        (1.5, TypeError, "seed must be an integer"),
        (True, TypeError, "seed must be an integer"),
        (-1, ValueError, "seed must be >= 0"),
    ],
)
def test_bad_seeds(seed, error, match):
    with pytest.raises(error, match=match):
        set_seed(seed)
