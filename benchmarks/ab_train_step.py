"""In-process A/B of one change to the training step of `train_step.py`'s models.

Separate processes on a shared VM drift by 5-20% from run to run, which hides the
2-5% effects of most single changes. This script builds the same model twice in one
process and alternates their steps:

* model A is built and compiled from the working tree;
* then ``apply()`` of the patch module runs (it monkeypatches the change in, or
  back out), and model B is built and compiled;
* the two models' ``train_on_batch`` steps alternate, A first on even rounds and B
  first on odd ones, and the medians are compared.

Repeat runs of the same comparison agreed to within about 1%. The patch module is an
ordinary Python file on ``--patch-path`` with an ``apply()`` function, for example::

    # /tmp/patches/small_chunks.py
    def apply():
        from keras_sphere.layers import batch_chunks
        batch_chunks.CHUNK_BYTES = 2**18

    PYTHONPATH=. python benchmarks/ab_train_step.py mnist small_chunks \\
        --patch-path /tmp/patches --rounds 8

Patches must act before B is traced: Keras traces a model at its first step, so A
keeps the code it was traced with. A ratio B / A above 1 means B is slower. The models
and inputs are those of `train_step.py` (same seed); only keras-sphere runs.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time

from train_step import CONFIG_NAMES
from train_step import SEED
from train_step import build_ours


def _build(name: str):
    import keras

    keras.utils.set_random_seed(SEED)
    model, x, y = build_ours(name)
    for _ in range(2):  # compile, then one untimed step
        model.train_on_batch(x, y)
    return model, x, y


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", choices=CONFIG_NAMES)
    parser.add_argument("patch", help="module with apply(), found on --patch-path")
    parser.add_argument("--patch-path", default=".", help="directory of the module")
    parser.add_argument("--rounds", type=int, default=8, help="timed steps per model")
    args = parser.parse_args(argv)

    import keras_sphere  # noqa: F401  (selects the JAX backend)

    sys.path.insert(0, args.patch_path)
    patch = importlib.import_module(args.patch)
    models = {"A": _build(args.config)}
    patch.apply()
    models["B"] = _build(args.config)
    times = {"A": [], "B": []}
    for round_index in range(args.rounds):
        order = ("A", "B") if round_index % 2 == 0 else ("B", "A")
        for key in order:
            model, x, y = models[key]
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[key].append(time.perf_counter() - start)
    medians = {key: statistics.median(value) for key, value in times.items()}
    for key, label in (("A", "working tree"), ("B", f"with {args.patch}")):
        print(
            f"{key} ({label}): median {medians[key]:.4f} s/step, "
            f"min {min(times[key]):.4f}"
        )
    print(f"B / A median ratio: {medians['B'] / medians['A']:.3f}")


if __name__ == "__main__":
    main()
