"""Where the weather forecaster's training step spends its time, by kind of work.

Profiles the compiled training step of issue 19's configuration (the weather_64
recipe's `WeatherForecaster` at a given grid size, batch 1, forward, backward and
Adam's update) with the JAX profiler, and adds up the CPU time of XLA's operations
by what they do, read from each operation's name stack:

- ``to_spectral`` / ``to_spatial``: the spin-weighted transforms of every layer
  (`TransformState`), forward pass and gradient separately;
- ``mix_degrees``: the per-degree channel products of `SpinSphericalConv`;
- ``optimizer``: Adam's update;
- ``other``: everything else (batch norms, phase collapse, pooling's padding, the
  loss, parameter reshapes).

Code without the named scopes (before issue 19's work) falls back on the jitted
transform functions' names (``_forward``, ``_inverse``); its per-degree products
then count as ``other``.

    PYTHONPATH=. python benchmarks/profile_step.py 64 256 --json out.json
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import pathlib
import re
import sys
import tempfile
import time

import jax
import numpy as np

import keras_sphere  # noqa: F401  (selects the JAX backend)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CATEGORIES = ("to_spectral", "to_spatial", "mix_degrees", "optimizer", "other")
# Thread-level wrappers in the trace that contain the operations, not operations.
_WRAPPERS = ("ThunkExecutor", "PjitFunction", "$")


def build_step(grid_size: int):
    """The jitted training step, its arguments and the model."""
    import keras

    sys.path.insert(0, str(REPO_ROOT / "zoo" / "weather_64"))
    from train import VARIABLES
    from train import Recipe
    from train import build_model

    from keras_sphere.data.weather import ChannelLayout
    from keras_sphere.data.weather import Normalization

    recipe = dataclasses.replace(Recipe(), grid_size=grid_size)
    layout = ChannelLayout.from_variables(VARIABLES, recipe.levels)
    ones = [1.0] * layout.num_channels
    model = build_model(recipe, Normalization(layout, [0.0] * len(ones), ones, ones))
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    shape = (1, grid_size, grid_size, layout.num_channels)
    x, y = (rng.normal(size=shape).astype(np.float32) for _ in range(2))

    def loss(trainable, others, x, y):
        prediction, others = model.stateless_call(trainable, others, x, training=True)
        return ((prediction - y) ** 2).mean(), others

    def step(trainable, others, optimizer_state, x, y):
        (value, others), grads = jax.value_and_grad(loss, has_aux=True)(
            trainable, others, x, y
        )
        with jax.named_scope("optimizer"):
            trainable, optimizer_state = optimizer.stateless_apply(
                optimizer_state, grads, trainable
            )
        return value, trainable, others, optimizer_state

    arguments = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
        x,
        y,
    )
    return jax.jit(step), arguments


def op_names(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> its op_name metadata (the JAX name stack)."""
    names = {}
    for line in hlo_text.splitlines():
        match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = .*metadata=\{([^}]*)\}", line)
        if match:
            op_name = re.search(r'op_name="([^"]*)"', match.group(2))
            names[match.group(1)] = op_name.group(1) if op_name else ""
    return names


def _short(op_name: str) -> str:
    """A name stack without its jit/jvp wrappers and layer indices, for grouping."""
    wrapper = r"(jit|jvp|checkpoint|remat)\(([^()]*)\)"
    op_name = re.sub(wrapper, r"\2", op_name)
    op_name = re.sub(r"_\d+(?=/|$)", "", op_name)
    return "/".join(op_name.split("/")[-4:])


def category(op_name: str) -> str:
    """The kind of work of an operation, from its name stack."""
    if "optimizer" in op_name:
        return "optimizer"
    if "to_spectral" in op_name or "jit(_forward" in op_name:
        return "to_spectral"
    if "to_spatial" in op_name or "jit(_inverse" in op_name:
        return "to_spatial"
    if "mix_degrees" in op_name:
        return "mix_degrees"
    return "other"


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matrix-product rate (GFLOP/s), all cores."""
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).normal(size=(size, size)), jnp.float32)
    product = jax.jit(lambda a: jnp.dot(a, a, precision="highest"))
    jax.block_until_ready(product(a))
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(product(a))
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def profile(grid_size: int, steps: int) -> dict:
    step, arguments = build_step(grid_size)
    started = time.perf_counter()
    lowered = step.lower(*arguments)
    trace_s = time.perf_counter() - started
    compiled = lowered.compile()
    compile_s = time.perf_counter() - started - trace_s
    names = op_names(compiled.as_text())
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    flops = float(cost.get("flops", np.nan))  # XLA's count for the whole step
    jax.block_until_ready(compiled(*arguments))
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        started = time.perf_counter()
        for _ in range(steps):
            jax.block_until_ready(compiled(*arguments))
        step_s = (time.perf_counter() - started) / steps
        jax.profiler.stop_trace()
        (path,) = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
        from jax.profiler import ProfileData

        data = ProfileData.from_file(path)
        seconds = collections.Counter()
        largest = collections.Counter()  # operations grouped by short name
        for plane in data.planes:
            for line in plane.lines:
                for event in line.events:
                    if event.name.startswith(_WRAPPERS) or event.name not in names:
                        continue
                    op_name = names[event.name]
                    direction = "backward" if "transpose(" in op_name else "forward"
                    kind = category(op_name)
                    seconds[(kind, direction)] += event.duration_ns / 1e9
                    largest[_short(op_name)] += event.duration_ns / 1e9
    per_step = {f"{c}/{d}": v / steps for (c, d), v in sorted(seconds.items())}
    busy = sum(per_step.values())
    rate = matmul_gflops()
    return {
        "flops": flops,
        "matmul_gflops": rate,
        # The moonshot of issue 19: the step within 3x of its arithmetic run at
        # the matrix-product rate.
        "step_over_arithmetic": step_s / (flops / (rate * 1e9)),
        "grid_size": grid_size,
        "trace_s": trace_s,
        "compile_s": compile_s,
        "step_s": step_s,
        "operations_cpu_s": busy,
        "cpu_s_by_kind": per_step,
        "largest_cpu_s": {k: v / steps for k, v in largest.most_common(20)},
        "share_by_kind": {
            c: sum(v for k, v in per_step.items() if k.startswith(c + "/")) / busy
            for c in CATEGORIES
        },
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[64])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    results = []
    for n in args.sizes:
        result = profile(n, args.steps)
        results.append(result)
        shares = ", ".join(f"{k} {v:.0%}" for k, v in result["share_by_kind"].items())
        print(
            f"{n} x {n}: step {result['step_s']:.2f} s (operations "
            f"{result['operations_cpu_s']:.2f} CPU s), trace "
            f"{result['trace_s']:.0f} s, compile {result['compile_s']:.0f} s; "
            f"{shares}; "
            f"{result['flops'] / 1e9:.1f} GFLOP at {result['matmul_gflops']:.0f} "
            f"GFLOP/s: {result['step_over_arithmetic']:.1f}x the arithmetic",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
