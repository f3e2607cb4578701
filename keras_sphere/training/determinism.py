"""Seeded, repeatable training runs, and what stays non-deterministic.

Call `set_seed(seed)` once at the start of a run, before building models and data
pipelines. What is then repeatable:

- Weight initialisation and layer seed generators (dropout): Keras draws their seeds
  from Python's `random` when each layer is created.
- `fit(x, y, shuffle=True)` on arrays: Keras draws each epoch's permutation from
  NumPy's global generator. Repeatable from the seed, but not across a restart;
  `ResumableBatches` shuffles from (seed, pass) instead.
- XLA on CPU: the same program on the same number of devices gave bit-identical
  weights run after run (tests/training/test_checkpoints.py compares two runs
  exactly). A different device count changes the reduction order: DataParallel on
  8 devices and one device agreed to 1e-6 in the weights after 6 SGD steps, not
  bit for bit (tests/test_distribution.py).

What is not (not verified here, no accelerator was available):

- GPU: some XLA kernels (scatter-adds, some reductions) use atomics and autotuning
  can pick different algorithms. Start Python with
  ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` (`XLA_GPU_DETERMINISTIC_FLAGS`) for
  repeatable runs at some cost in speed. TPUs are usually deterministic.
- tf.data: `shuffle` without an explicit seed follows TensorFlow's global seed,
  which `set_seed` sets only when TensorFlow is already imported; parallel `map`
  keeps its order unless `deterministic=False`. Pass seeds explicitly.
- Restarts: `BackupAndRestore` does not save seed-generator state, so a resumed run
  with dropout draws different masks from the restart on.
- Multi-host runs: call `set_seed` with the same seed on every process. Before or
  after `keras.distribution.initialize` both work (`set_seed` starts no JAX
  backend; `initialize` keeps a seed that is already set, else draws a common one).
"""

from __future__ import annotations

import importlib.util
import random
import sys

import keras
import numpy as np

__all__ = ["XLA_GPU_DETERMINISTIC_FLAGS", "set_seed"]

# XLA flag for deterministic GPU kernels (present in jaxlib 0.10.2; not run here).
XLA_GPU_DETERMINISTIC_FLAGS = "--xla_gpu_deterministic_ops=true"


def set_seed(seed: int) -> None:
    """Seed Python's `random`, NumPy's global generator and Keras' global seed.

    This is `keras.utils.set_random_seed(seed)`, which also seeds TensorFlow, except
    that TensorFlow is seeded only when it is already imported: Keras 3.15 imports
    TensorFlow for that whenever it is installed, which costs seconds and about a
    gigabyte on a run that does not use it. A run with a tf.data pipeline imports
    TensorFlow first and gets it seeded too.

    Args:
        seed: a non-negative integer.

    Raises:
        TypeError: if `seed` is not an integer.
        ValueError: if `seed` is negative.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(
            f"seed must be an integer. Received: seed={seed!r} ({type(seed).__name__})"
        )
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0. Received: seed={seed}")
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        keras.utils.set_random_seed(seed)
    else:
        _set_seed_without_tensorflow(seed)


def _set_seed_without_tensorflow(seed: int) -> None:
    """What `keras.utils.set_random_seed` does in Keras 3.15, without TensorFlow.

    Uses Keras internals (the global seed attributes of `keras.utils.rng_utils`);
    tests/training/test_determinism.py compares it with `set_random_seed`.
    """
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    # Keras shuffles arrays with NumPy's legacy global generator.
    np.random.seed(seed)  # noqa: NPY002
