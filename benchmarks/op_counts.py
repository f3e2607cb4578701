"""Operations in the traced training step of the weather forecaster, by grid size.

Compile time grows with the number of operations XLA is handed. This traces the
gradient of the weather_64 recipe's `WeatherForecaster` (its layers' `stateless_call`,
training mode, batch 1) at several grid sizes without compiling, and counts the
jaxpr's equations by primitive, nested jaxprs included (issue 19).

    PYTHONPATH=. python benchmarks/op_counts.py 16 64 128 256
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import sys
import time

import jax
import numpy as np

import keras_sphere  # noqa: F401  (selects the JAX backend)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def count_primitives(eqns, counter: collections.Counter) -> None:
    """Add the primitives of `eqns` and of every jaxpr nested in them to `counter`."""
    for eqn in eqns:
        counter[eqn.primitive.name] += 1
        for param in eqn.params.values():
            for inner in param if isinstance(param, list | tuple) else [param]:
                if hasattr(inner, "jaxpr") and hasattr(inner.jaxpr, "eqns"):
                    count_primitives(inner.jaxpr.eqns, counter)
                elif hasattr(inner, "eqns"):
                    count_primitives(inner.eqns, counter)


def main(argv=None) -> None:
    sys.path.insert(0, str(REPO_ROOT / "zoo" / "weather_64"))
    from train import VARIABLES
    from train import Recipe
    from train import build_model

    from keras_sphere.data.weather import ChannelLayout
    from keras_sphere.data.weather import Normalization

    sizes = [int(n) for n in (argv if argv is not None else sys.argv[1:])] or [64]
    for n in sizes:
        recipe = dataclasses.replace(Recipe(), grid_size=n)
        layout = ChannelLayout.from_variables(VARIABLES, recipe.levels)
        ones = [1.0] * layout.num_channels
        model = build_model(
            recipe, Normalization(layout, [0.0] * len(ones), ones, ones)
        )
        x = np.zeros((1, n, n, layout.num_channels), np.float32)
        trainable = [v.value for v in model.trainable_variables]
        others = [v.value for v in model.non_trainable_variables]

        def loss(trainable, others, x, model=model):
            y, _ = model.stateless_call(trainable, others, x, training=True)
            return (y**2).mean()

        start = time.perf_counter()
        jaxpr = jax.make_jaxpr(jax.value_and_grad(loss))(trainable, others, x)
        counter = collections.Counter()
        count_primitives(jaxpr.jaxpr.eqns, counter)
        top = ", ".join(f"{k} {v}" for k, v in counter.most_common(6))
        print(
            f"{n} x {n} (L = {recipe.grid.max_bandlimit}): "
            f"{sum(counter.values())} equations, traced in "
            f"{time.perf_counter() - start:.1f} s; {top}",
            flush=True,
        )


if __name__ == "__main__":
    main()
