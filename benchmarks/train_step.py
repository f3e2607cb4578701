"""Training-step benchmark: keras_sphere next to google-research/spherical-cnn on CPU.

Two configurations, both as in the anchor paper (``models.md`` section 1.3,
``layers.md`` section 11):

* ``qm9``: the default QM9 backbone (``spin_spherical_residual_regressor``) on 32 x 32
  spheres, a batch of 16 molecules of 18 atoms (16 * 18 = 288 spheres of 10 channels,
  spin 0), resolutions (32, 32, 16, 16, 8, 8), spins (0) then (0, 1), widths
  (10, 64, 128, 128, 256, 256), localized filters P = (8, 8, 8, 4, 4), spectral pooling,
  a plain first block (BN + phase collapse) then four residual blocks, passing
  coefficients between blocks (the same network; see ``QM9Backbone``); the
  per-atom invariant readout ("molecules" mode), an MLP tail summed over atoms and an
  L1 loss. keras_sphere's tail is a DeepSets MLP (Dense 256 relu, Dense 256 relu per
  atom, masked sum / 29, Dense 256 relu, Dense 256 relu, Dense 1); the anchor runs its
  default ``deepsets`` tail, which also adds atom-type embeddings, a distance-to-centre
  term and atom counts (335,105 parameters, under 1% of the step's work).
* ``mnist``: the spherical-MNIST ``spin_classifier_6_layers`` on 64 x 64 inputs, batch
  32: resolutions (64, 64, 64, 32, 32, 16, 16), spins (0) then (0, 1), widths
  (1, 16, 16, 20, 24, 28, 32), P = (6, 6, 4, 4, 3, 3), spatial pooling, spatial BN +
  magnitude nonlinearity after every convolution, invariant readout, Dense 10, softmax
  cross-entropy. (The anchor applies leaky ReLU to the real part of spin 0 where
  keras_sphere applies the magnitude nonlinearity to every spin; same cost.)

What is measured, per configuration and side, each in its own subprocess:

* compile time: seconds of the first training step (trace + XLA compile + one run),
  and ``compile_s`` = that minus the median step time;
* steps per second: 1 / median of ``--steps`` timed steps that follow ``WARMUP_STEPS``
  untimed ones, each step synchronised (keras_sphere: ``model.train_on_batch``, which
  returns host floats; anchor: a jitted value_and_grad + optax Adam step followed by
  ``block_until_ready``). The table's ``ratio`` is ours / reference; ``best`` is the
  same ratio from each side's fastest step, the least disturbed on a shared machine.
  The share of the CPU that other processes used is recorded per step
  (``others_busy_steps``); ``--retry-busy N`` reruns a disturbed case up to N times
  and keeps its least disturbed attempt;
* peak memory: the process's peak resident set size (``ru_maxrss``), absolute and above
  the baseline once its libraries were imported;
* setup time: building the model, its transform tables and the optimizer state.

``--devices N`` runs the keras_sphere side under ``data_parallel()`` on N virtual CPU
devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``; they share the same
cores): each device takes 1/N of the batch. The reference stays on one device, so its
ratio is then not like for like; the option measures our data-parallel path.

keras_sphere side: Keras 3 on JAX, ``model.compile(optimizer="adam", jit_compile=True)``
(MAE loss for QM9, sparse categorical cross-entropy from logits for MNIST), float32
policy, random inputs with fixed seeds.

Reference side (optional): ``--reference-repo`` is a checkout of
google-research/spherical-cnn and ``--reference-python`` a Python with what its model
modules import (jax, flax, optax, einshape, spherical, sympy; no TensorFlow). The
timing script ``REFERENCE_SCRIPT`` below is written to a temporary directory and run
with that Python and ``PYTHONPATH=<repo>``: it builds the anchor's own
``molecules.models.SpinSphericalRegressor`` (residual, default QM9 config, on
precomputed spheres) and ``spherical_mnist.models.spin_classifier_6_layers``, and times
the anchor's training step (``model.apply(..., mutable=["batch_stats"])``,
``jax.value_and_grad``, gradients conjugated as in its ``train.py``, ``optax.adam``).
Without the two options only keras_sphere runs and the reference is reported as
skipped. The target is ``TARGET_SPEEDUP`` times the reference's steps per second.

Usage::

    PYTHONPATH=. python benchmarks/train_step.py                  # ours only, ~5 min
    PYTHONPATH=. python benchmarks/train_step.py --configs mnist --steps 5
    PYTHONPATH=. python benchmarks/train_step.py \\
        --reference-repo /tmp/spherical-cnn-ref \\
        --reference-python /tmp/ref-venv/bin/python --wait-idle 300 --retry-busy 2
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
from _runner import IDLE_BUSY_MAX
from _runner import REPO_ROOT
from _runner import RESULT_MARK  # noqa: F401  (REFERENCE_SCRIPT reads it)
from _runner import Result
from _runner import add_load_arguments
from _runner import case_env
from _runner import cpu_sample
from _runner import environment_record
from _runner import fmt
from _runner import others_busy
from _runner import peak_rss_mb
from _runner import print_environment
from _runner import report_case
from _runner import run_marked
from _runner import wait_for_idle

CONFIG_NAMES = (
    "qm9",
    "mnist",
    "qm9_preset",
    "weather_64",
    "weather_256",
    "weather_256_preset",
)
# Configurations without a reference counterpart.
OURS_ONLY = ("qm9_preset", "weather_64", "weather_256", "weather_256_preset")
CONFIGS: dict[str, dict[str, Any]] = {
    "qm9": {
        "description": "QM9 backbone, 16 molecules x 18 atoms, 32 x 32",
        "batch": 16,
        "n_atoms": 18,
        "resolutions": (32, 32, 16, 16, 8, 8),
        "spins": ((0,), (0, 1), (0, 1), (0, 1), (0, 1), (0, 1)),
        "widths": (10, 64, 128, 128, 256, 256),
        "num_filter_params": (None, 8, 8, 8, 4, 4),
        "pooling": "spectral",
        "tail_width": 256,
        "max_atoms": 29,  # the anchor's QM9 atom-count normaliser
        "atom_types": (1.0, 6.0, 7.0, 8.0, 9.0),
    },
    "mnist": {
        "description": "spherical MNIST spin_classifier_6_layers, batch 32, 64 x 64",
        "batch": 32,
        "resolutions": (64, 64, 64, 32, 32, 16, 16),
        "spins": ((0,), (0, 1), (0, 1), (0, 1), (0, 1), (0, 1), (0, 1)),
        "widths": (1, 16, 16, 20, 24, 28, 32),
        "num_filter_params": (None, 6, 6, 4, 4, 3, 3),
        "pooling": "spatial",
        "num_classes": 10,
    },
    "qm9_preset": {
        "description": "the qm9 preset's QM9Regressor (zoo/qm9/train.py), 12 targets, "
        "batch 16 molecules of QM9's atom-count mix, 20 atom slots per molecule",
        "batch": 16,
    },
    # Issue 19's UNet: the weather_64 recipe's WeatherForecaster (widths 32, 64, 128,
    # num_filter_params 8; z and t on 4 levels as spin 0, wind on 4 levels as spin
    # 1), one-step rollouts, batch 1; also times a 20-step forecast (inference).
    "weather_64": {
        "description": "weather_64 recipe's WeatherForecaster, 64 x 64, batch 1, "
        "1-step rollout; plus a 20-step forecast",
        "batch": 1,
        "grid_size": 64,
    },
    "weather_256": {
        "description": "the same WeatherForecaster on 256 x 256 (L = 127), batch 1, "
        "1-step rollout; plus a 20-step forecast",
        "batch": 1,
        "grid_size": 256,
    },
    # Issue 20's preset: zoo/weather_256's PooledWeatherForecaster (weather_64's UNet
    # on the grid pooled to 64 x 64, plus a (8, 16) UNet on 256 x 256), batch 1.
    "weather_256_preset": {
        "description": "the weather_256 preset's PooledWeatherForecaster, 256 x 256, "
        "batch 1, 1-step rollout; plus a 20-step (5-day) forecast",
        "batch": 1,
        "grid_size": 256,
        "recipe": "weather_256",
    },
}
FORECAST_STEPS = 20
STEPS = 3  # timed steps per case
WARMUP_STEPS = 1  # untimed steps between the compiling step and the timed ones
TARGET_SPEEDUP = 5.0
DTYPE = "float32"
SEED = 0
CASE_TIMEOUT_S = 3600  # a case subprocess is killed after this long
DEFAULT_JSON = REPO_ROOT / "benchmarks" / "results" / "train_step_cpu.json"
DISTRIBUTIONS = ("jax", "jaxlib", "keras", "numpy")


# --------------------------------------------------------------------------------------
# Measurement helpers (run inside case subprocesses).


def time_steps(step, steps: int) -> Result:
    """Time `step` (a blocking callable returning the loss) as described above.

    Also records, per timed step, the fraction of the machine that other processes
    used meanwhile (``others_busy_steps``), and the best (minimum) step time, which
    is the least disturbed by them on a shared machine.
    """
    start = time.perf_counter()
    first_loss = float(step())
    first_step_s = time.perf_counter() - start
    for _ in range(WARMUP_STEPS):
        step()
    times, busy = [], []
    for _ in range(steps):
        before = cpu_sample(own=True)
        start = time.perf_counter()
        last_loss = float(step())
        times.append(time.perf_counter() - start)
        busy.append(others_busy(before, cpu_sample(own=True)))
    step_s = statistics.median(times)
    return {
        "first_step_s": first_step_s,
        "compile_s": max(first_step_s - step_s, 0.0),
        "step_times_s": times,
        "others_busy_steps": busy,
        "step_s": step_s,
        "steps_per_s": 1.0 / step_s,
        "best_step_s": min(times),
        "best_steps_per_s": 1.0 / min(times),
        "loss_first": first_loss,
        "loss_last": last_loss,
        "finite": bool(np.isfinite(first_loss) and np.isfinite(last_loss)),
    }


def random_inputs(name: str) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Fixed-seed random inputs and labels of configuration `name`."""
    config = CONFIGS[name]
    rng = np.random.default_rng(SEED)
    size = config["resolutions"][0]
    if name == "qm9":
        batch, atoms = config["batch"], config["n_atoms"]
        spheres = rng.random((batch, atoms, size, size, 1, config["widths"][0]))
        charges = rng.choice(config["atom_types"], (batch, atoms))
        positions = rng.normal(size=(batch, atoms, 3))
        labels = rng.normal(size=(batch,))
        inputs = (spheres, charges, positions)
        return tuple(x.astype(np.float32) for x in inputs), labels.astype(np.float32)
    images = rng.random((config["batch"], size, size, 1, config["widths"][0]))
    labels = rng.integers(0, config["num_classes"], (config["batch"],))
    return (images.astype(np.float32),), labels.astype(np.int32)


# --------------------------------------------------------------------------------------
# keras_sphere.


def _qm9_model_class():
    import keras

    from keras_sphere.layers import InvariantReadout
    from keras_sphere.layers import PhaseCollapse
    from keras_sphere.layers import SpectralBatchNorm
    from keras_sphere.layers import SphericalResBlock
    from keras_sphere.layers import SpinSphericalConv

    class QM9Backbone(keras.Model):
        """QM9 backbone + molecules readout + DeepSets tail on (B, A, n, n, 1, C)."""

        def __init__(self, config: Result, **kwargs):
            super().__init__(**kwargs)
            spins, widths = config["spins"], config["widths"]
            params, sizes = config["num_filter_params"], config["resolutions"]
            self.max_atoms = config["max_atoms"]
            # Block 0: plain block (BN + phase collapse), as in the anchor. Its
            # output only feeds the first residual block's forward SHT, pooled to
            # that block's bandlimit, so it stays spectral: SpectralBatchNorm is
            # the spatial batch norm on coefficients (layers.md section 4.3) and
            # the phase collapse returns the pooled coefficients of its output
            # (the first residual block's spectral pooling moves into it).
            self.conv0 = SpinSphericalConv(
                widths[1],
                spins[0],
                spins[1],
                num_filter_params=params[1],
                output_representation="spectral",
            )
            self.norm0 = SpectralBatchNorm(spins[1])
            self.collapse0 = PhaseCollapse(
                spins[1], representation="spectral", ell_max_out=sizes[2] // 2 - 1
            )
            # Blocks pass coefficients to each other and to the readout (the same
            # network as passing grids: each block's input transform is the forward
            # SHT of the last one's output, and the readout's spin-0 mean is a_00),
            # so their last phase collapses run spectrally.
            self.blocks = [
                SphericalResBlock(
                    widths[i],
                    spins_out=spins[i],
                    spins_in=spins[i - 1],
                    downsample=i > 2 and sizes[i] < sizes[i - 1],
                    num_filter_params=params[i],
                    input_representation="spectral",
                    output_representation="spectral",
                )
                for i in range(2, len(widths))
            ]
            self.readout = InvariantReadout(
                spins[-1], mode="molecules", input_representation="spectral"
            )
            width = config["tail_width"]
            self.atom_mlp = [
                keras.layers.Dense(width, activation="relu") for _ in range(2)
            ]
            self.molecule_mlp = [
                keras.layers.Dense(width, activation="relu") for _ in range(2)
            ]
            self.head = keras.layers.Dense(1)

        def build(self, input_shape):
            # Built layer by layer from shapes: Keras' automatic build traces `call`
            # in a stateless scope, where the layers' transform tables (non-trainable
            # state with concrete values) cannot be created.
            spheres_shape, _ = input_shape
            shape = (None, *spheres_shape[2:])
            for layer in (self.conv0, self.norm0, self.collapse0, *self.blocks):
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
            self.readout.build(shape)
            shape = self.readout.compute_output_shape(shape)
            for layer in (*self.atom_mlp, *self.molecule_mlp, self.head):
                layer.build(shape)
                shape = layer.compute_output_shape(shape)

        def call(self, inputs, training=None):
            from keras import ops

            spheres, charges = inputs
            batch, atoms = spheres.shape[0], spheres.shape[1]
            mask = ops.cast(ops.reshape(charges, (-1,)) > 0, "float32")  # [b a]
            # [b, a, n, n, s, c] -> [(b a), n, n, s, c]
            field = ops.reshape(spheres, (-1, *spheres.shape[2:]))
            field = self.conv0(field)
            field = self.collapse0(self.norm0(field, training=training, mask=mask))
            for block in self.blocks:
                field = block(field, training=training, mask=mask)
            features = self.readout(field, mask=mask)  # [(b a), S C]
            for layer in self.atom_mlp:
                features = layer(features)
            features = ops.reshape(features * mask[:, None], (batch, atoms, -1))
            features = ops.sum(features, axis=1) / self.max_atoms  # [b, F]
            for layer in self.molecule_mlp:
                features = layer(features)
            return self.head(features)[:, 0]

    return QM9Backbone


def build_ours_qm9(config: Result):
    """Built and compiled keras_sphere QM9 model; returns (model, x, y)."""
    (spheres, charges, _), labels = random_inputs("qm9")
    model = _qm9_model_class()(config)
    model.build((spheres.shape, charges.shape))
    model.compile(optimizer="adam", loss="mae", jit_compile=True)
    return model, (spheres, charges), labels


def build_ours_mnist(config: Result):
    """Built and compiled keras_sphere MNIST classifier; returns (model, x, y)."""
    import keras

    from keras_sphere.layers import InvariantReadout
    from keras_sphere.layers import MagnitudeNonlinearity
    from keras_sphere.layers import SphericalBatchNorm
    from keras_sphere.layers import SphericalPooling
    from keras_sphere.layers import SpinSphericalConv

    (images,), labels = random_inputs("mnist")
    sizes, spins = config["resolutions"], config["spins"]
    inputs = keras.Input(images.shape[1:], batch_size=images.shape[0])
    field = inputs
    for i in range(1, len(sizes)):
        if sizes[i] < sizes[i - 1]:
            field = SphericalPooling(sizes[i - 1] // sizes[i])(field)
        field = SpinSphericalConv(
            config["widths"][i],
            spins[i - 1],
            spins[i],
            num_filter_params=config["num_filter_params"][i],
        )(field)
        field = SphericalBatchNorm(spins[i])(field)
        field = MagnitudeNonlinearity(spins[i])(field)
    features = InvariantReadout(spins[-1])(field)
    logits = keras.layers.Dense(config["num_classes"])(features)
    model = keras.Model(inputs, logits, name="spin_classifier_6_layers")
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    return model, images, labels


def build_ours_qm9_preset(config: Result):
    """The qm9 preset's regressor as its recipe builds it; returns (model, x, y).

    Molecules are random, with atom counts drawn from QM9's own mix (mean 18.0,
    3 to 29 atoms), so the packed backbone does the preset's work per molecule.
    """
    import keras

    sys.path.insert(0, str(REPO_ROOT / "zoo" / "qm9"))
    from train import BATCH
    from train import build_model

    from keras_sphere.models.qm9 import TARGET_NAMES
    from keras_sphere.models.qm9 import budget_layout

    rng = np.random.default_rng(SEED)
    counts = rng.choice(np.arange(3, 30), size=4 * BATCH, p=_QM9_ATOM_COUNT_SHARES)
    charges = np.zeros((len(counts), 29), np.int32)
    positions = np.zeros((len(counts), 29, 3), np.float32)
    for index, count in enumerate(counts):
        charges[index, :count] = rng.choice((1, 6, 7, 8, 9), count)
        positions[index, :count] = rng.normal(size=(count, 3)) * 1.6
    model = build_model(TARGET_NAMES, None, None)
    x, _, _ = budget_layout(
        {"positions": positions, "charges": charges},
        None,
        BATCH,
        model.backbone.atom_capacity(BATCH),
    )
    x = {k: v[:BATCH] for k, v in x.items()}
    y = {name: rng.normal(size=BATCH).astype(np.float32) for name in TARGET_NAMES}
    model.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=True)
    return model, x, y


# QM9's 130,831 molecules by atom count 3 ... 29 (keras_sphere.data.qm9, "original").
_QM9_ATOM_COUNTS = np.array(
    [2, 4, 5, 12, 20, 65, 172, 483, 1053, 2189, 4027, 6758, 10216, 13824, 16969]
    + [17442, 18146, 12403, 13166, 4428, 6362, 712, 1923, 59, 356, 0, 35]
)
_QM9_ATOM_COUNT_SHARES = _QM9_ATOM_COUNTS / _QM9_ATOM_COUNTS.sum()


def build_ours_weather(config: Result):
    """A weather recipe's forecaster (default weather_64's) on the configuration's
    grid, untrained: (model, x, y)."""
    import dataclasses

    import keras

    from keras_sphere.data.weather import ChannelLayout
    from keras_sphere.data.weather import Normalization
    from keras_sphere.zoo.weather_recipe import VARIABLES
    from keras_sphere.zoo.weather_recipe import build_model

    sys.path.insert(0, str(REPO_ROOT / "zoo" / config.get("recipe", "weather_64")))
    from train import RECIPE

    recipe = dataclasses.replace(RECIPE, grid_size=config["grid_size"])
    layout = ChannelLayout.from_variables(VARIABLES, recipe.levels)
    ones = [1.0] * layout.num_channels
    model = build_model(recipe, Normalization(layout, [0.0] * len(ones), ones, ones))
    rng = np.random.default_rng(SEED)
    shape = (config["batch"], *recipe.grid.shape, layout.num_channels)
    x = rng.normal(size=shape).astype(np.float32)
    y = rng.normal(size=(shape[0], 1, *shape[1:])).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=True)
    return model, x, y


def build_ours(name: str):
    """Built and compiled keras_sphere model of configuration `name`: (model, x, y)."""
    builder = {
        "qm9": build_ours_qm9,
        "mnist": build_ours_mnist,
        "qm9_preset": build_ours_qm9_preset,
        "weather_64": build_ours_weather,
        "weather_256": build_ours_weather,
        "weather_256_preset": build_ours_weather,
    }[name]
    return builder(CONFIGS[name])


def _total_loss(logs) -> float:
    """`train_on_batch`'s loss: the first entry where it also returns per-head ones."""
    return float(logs[0] if isinstance(logs, list | tuple) else logs)


def run_ours(name: str, steps: int, devices: int = 1) -> Result:
    import keras

    import keras_sphere  # noqa: F401  (selects the JAX backend, registers layers)

    if devices > 1:  # spawn_ours started this process with that many CPU devices
        from keras_sphere.distribution import batch_device_count
        from keras_sphere.distribution import data_parallel

        data_parallel()
        if batch_device_count() != devices:
            raise RuntimeError(
                f"asked for {devices} CPU devices, JAX has {batch_device_count()}"
            )
    keras.utils.set_random_seed(SEED)
    baseline = peak_rss_mb()
    start = time.perf_counter()
    model, x, y = build_ours(name)
    setup_s = time.perf_counter() - start
    record = time_steps(lambda: _total_loss(model.train_on_batch(x, y)), steps)
    record["molecules_per_s"] = (
        CONFIGS[name]["batch"] / record["step_s"] if "qm9" in name else None
    )
    if name.startswith("weather"):  # a 5-day forecast: inference only
        forecast = time_steps(
            lambda: np.asarray(model.rollout(x, FORECAST_STEPS)).mean(), 2
        )
        record["forecast_20_steps_s"] = forecast["step_s"]
        record["forecast_compile_s"] = forecast["compile_s"]
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    record.update(
        {
            "setup_s": setup_s,
            "params_trainable": trainable,
            "params_non_trainable": model.count_params() - trainable,
            "peak_rss_mb": peak_rss_mb(),
            "peak_mb": peak_rss_mb() - baseline,
            "baseline_rss_mb": baseline,
            "devices": devices,
        }
    )
    return record


# --------------------------------------------------------------------------------------
# google-research/spherical-cnn (run in a subprocess with the reference's Python).

REFERENCE_SCRIPT = r'''
"""Times google-research/spherical-cnn train steps (argv: see spawn_reference)."""
import functools
import importlib.metadata
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

name, config, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
folder, n_inputs, benchmarks = sys.argv[4], int(sys.argv[5]), sys.argv[6]
sys.path.insert(0, benchmarks)
import train_step as bench  # noqa: E402  (stdlib + numpy only at import time)


def tuples(value):
    return tuple(tuples(v) for v in value) if isinstance(value, list) else value


def build_qm9():
    from spherical_cnn.molecules import models

    metadata = nn.FrozenDict({
        "atom_types": tuple(config["atom_types"]),
        "max_atoms": config["max_atoms"],
        "max_pairwise_distance": 12.040386407885462,
        "min_pairwise_distance": 0.9586065591971576,
    })
    num_filter_params = tuples(config["num_filter_params"])
    model = models.SpinSphericalRegressor(
        resolutions=tuples(config["resolutions"]),
        spins=tuples(config["spins"]),
        widths=tuples(config["widths"]),
        residual=True,
        spectral_pooling=config["pooling"] == "spectral",
        num_filter_params=(num_filter_params[1],) + num_filter_params[1:],
        tail_module="deepsets",
        use_atom_type_embedding=True,
        use_distance_to_center=True,
        atom_aggregation_mode="weighted_by_atom_type",
        num_transformer_layers=4,
        num_transformer_heads=4,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        metadata=metadata,
        axis_name=None,
        input_transformer=None,
    )

    def loss_of(outputs, labels):  # L1 on standardised labels, as in its train.py
        return jnp.mean(jnp.abs(outputs - labels))

    return model, loss_of


def build_mnist():
    from spherical_cnn.spherical_mnist import models

    model = models.spin_classifier_6_layers(config["num_classes"], axis_name=None)

    def loss_of(logits, labels):  # its cross_entropy_loss, averaged
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    return model, loss_of


def main():
    inputs = tuple(np.load(f"{folder}/input{i}.npy") for i in range(n_inputs))
    labels = np.load(f"{folder}/labels.npy")
    baseline = bench.peak_rss_mb()
    start = time.perf_counter()
    model, loss_of = {"qm9": build_qm9, "mnist": build_mnist}[name]()
    variables = jax.jit(functools.partial(model.init, train=False))(
        jax.random.PRNGKey(bench.SEED), *inputs)
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    constants = variables["constants"]
    optimizer = optax.adam(1e-4)
    opt_state = optimizer.init(params)
    jax.block_until_ready((params, opt_state, constants))
    setup_s = time.perf_counter() - start

    @jax.jit
    def train_step(params, batch_stats, opt_state, constants, inputs, labels):
        def loss_fn(params):
            variables = {"params": params, "batch_stats": batch_stats,
                         "constants": constants}
            outputs, new_variables = model.apply(
                variables, *inputs, mutable=["batch_stats"], train=True)
            return loss_of(outputs, labels), new_variables["batch_stats"]

        (loss, new_stats), grad = jax.value_and_grad(loss_fn, has_aux=True)(params)
        grad = jax.tree_util.tree_map(jnp.conj, grad)  # as its train.py does
        updates, opt_state = optimizer.update(grad, opt_state)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss

    state = [params, batch_stats, opt_state]

    def step():
        outputs = train_step(*state, constants, inputs, labels)
        state[:] = outputs[:3]
        return jax.block_until_ready(outputs[3])

    record = bench.time_steps(step, steps)
    leaves = jax.tree_util.tree_leaves(params)
    versions = {}
    for dist in ("jax", "jaxlib", "flax", "optax", "numpy", "spherical"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    record.update({
        "setup_s": setup_s,
        "params_complex_counted": int(sum(np.size(x) for x in leaves)),
        "peak_rss_mb": bench.peak_rss_mb(),
        "peak_mb": bench.peak_rss_mb() - baseline,
        "baseline_rss_mb": baseline,
        "versions": versions,
    })
    print(bench.RESULT_MARK + json.dumps(record), flush=True)


main()
'''


def reference_revision(repo: pathlib.Path) -> str | None:
    """Git revision of the reference checkout, if it is one."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def spawn_reference(name: str, args: argparse.Namespace) -> Result:
    """Time the reference implementation of `name` with the reference Python."""
    inputs, labels = random_inputs(name)  # qm9: spheres, charges, positions
    with tempfile.TemporaryDirectory(prefix="train_step_ref_") as folder:
        script = pathlib.Path(folder) / "reference_train_step.py"
        script.write_text(REFERENCE_SCRIPT)
        for i, array in enumerate(inputs):
            np.save(pathlib.Path(folder) / f"input{i}.npy", array)
        np.save(pathlib.Path(folder) / "labels.npy", labels)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(args.reference_repo.resolve())
        env.setdefault("JAX_PLATFORMS", "cpu")
        command = [str(args.reference_python), str(script), name]
        command += [json.dumps(CONFIGS[name]), str(args.reference_steps), folder]
        command += [str(len(inputs)), str(pathlib.Path(__file__).resolve().parent)]
        return _run_case(command, env, cwd=folder)


# --------------------------------------------------------------------------------------
# Case subprocesses.


def case_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    report_case(lambda: run_ours(spec["config"], spec["steps"], spec["devices"]))


def _run_case(command: list[str], env: dict[str, str], cwd=None) -> Result:
    record = run_marked(command, env, CASE_TIMEOUT_S, cwd=cwd)
    record.setdefault("status", "ok")
    return record


def spawn_ours(name: str, steps: int, devices: int = 1) -> Result:
    env = case_env()
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["KERAS_SPHERE_CACHE"] = "off"  # setup builds the tables, never reads a cache
    if devices > 1:  # JAX fixes its CPU device count when it starts
        flag = f"--xla_force_host_platform_device_count={devices}"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    command = [sys.executable, str(pathlib.Path(__file__).resolve())]
    spec = {"config": name, "steps": steps, "devices": devices}
    command += ["--case", json.dumps(spec)]
    return _run_case(command, env)


# --------------------------------------------------------------------------------------
# Machine load, environment and output.


def environment(args: argparse.Namespace) -> Result:
    reference = None
    if args.reference_repo is not None:
        reference = {
            "repo": str(args.reference_repo),
            "revision": reference_revision(args.reference_repo),
            "python": str(args.reference_python),
        }
    settings = {
        "configs": args.configs,
        "steps": args.steps,
        "reference_steps": args.reference_steps,
        "devices": args.devices,
        "warmup_steps": WARMUP_STEPS,
        "target_speedup": TARGET_SPEEDUP,
        "wait_idle_s": args.wait_idle,
        "retry_busy": args.retry_busy,
        "seed": SEED,
    }
    return environment_record(
        settings, DISTRIBUTIONS, device="cpu", dtype=DTYPE, reference=reference
    )


def summarize(results: list[Result], configs: list[str]) -> list[Result]:
    """One row per configuration: ours, reference, ratio and the target check."""
    rows = []
    for name in configs:
        by_side = {
            r["side"]: r for r in results if r["config"] == name and r["status"] == "ok"
        }
        ours, reference = by_side.get("keras_sphere"), by_side.get("reference")
        ratio = ratio_best = None
        if ours and reference:
            ratio = ours["steps_per_s"] / reference["steps_per_s"]
            ratio_best = ours["best_steps_per_s"] / reference["best_steps_per_s"]
        rows.append(
            {
                "config": name,
                "ours_steps_per_s": ours and ours["steps_per_s"],
                "reference_steps_per_s": reference and reference["steps_per_s"],
                "ratio": ratio,
                "ratio_best": ratio_best,
                "target": TARGET_SPEEDUP,
                "meets_target": None if ratio is None else ratio >= TARGET_SPEEDUP,
            }
        )
    return rows


def table(results: list[Result], summary: list[Result]) -> str:
    """Ours next to the reference (ratio = ours / reference steps per second)."""
    header = (
        f"{'config':<7} {'ours steps/s':>12} {'ref steps/s':>11} {'ratio':>6}"
        f" {'best':>6}  {'side':<12} {'step s':>8} {'best s':>8} {'compile s':>9}"
        f" {'setup s':>7} {'peak MB':>8} {'others':>6}"
    )
    lines = [header, "-" * len(header)]
    for row in summary:
        head = (
            f"{row['config']:<7} {fmt(row['ours_steps_per_s'], '12.4f')}"
            f" {fmt(row['reference_steps_per_s'], '11.4f')}"
            f" {fmt(row['ratio'], '6.2f')} {fmt(row['ratio_best'], '6.2f')}"
        )
        for r in results:
            if r["config"] != row["config"]:
                continue
            if r["status"] != "ok":
                lines.append(f"{head}  {r['side']:<12} {r['status']}: {r.get('note')}")
            else:
                busy = steps_busy(r)
                lines.append(
                    f"{head}  {r['side']:<12} {r['step_s']:>8.2f}"
                    f" {r['best_step_s']:>8.2f}"
                    f" {r['compile_s']:>9.1f} {r['setup_s']:>7.1f}"
                    f" {r['peak_rss_mb']:>8.0f} {fmt(busy and 100 * busy, '5.0f')}%"
                )
            head = " " * len(head)
    return "\n".join(lines)


def steps_busy(record: Result) -> float:
    """Median share of the CPU other processes used during the timed steps."""
    busy = [b for b in record.get("others_busy_steps", []) if b is not None]
    return statistics.median(busy) if busy else 0.0


def run_case(name: str, side: str, args: argparse.Namespace, started: float) -> Result:
    """Run one case, again (up to --retry-busy times) while others disturbed it.

    Keeps the attempt whose timed steps were the least disturbed.
    """
    best = None
    for attempt in range(1 + args.retry_busy):
        busy, waited = wait_for_idle(args.wait_idle)
        before = cpu_sample()
        if side == "keras_sphere":
            record = spawn_ours(name, args.steps, args.devices)
        else:
            record = spawn_reference(name, args)
        record = {"config": name, "side": side, **record, "attempt": attempt + 1}
        record["busy_before"], record["waited_s"] = busy, waited
        record["others_busy"] = others_busy(before, cpu_sample())
        status = record["status"]
        if status == "ok":
            status = f"{record['steps_per_s']:.4f} steps/s"
            status += f" (others {steps_busy(record):.0%} of the CPU)"
        else:
            status += f": {record.get('note')}"
        elapsed = time.perf_counter() - started
        print(f"  {name:<6} {side:<12} {status}  [{elapsed:.0f} s]", flush=True)
        if record["status"] != "ok":
            return record
        if best is None or steps_busy(record) < steps_busy(best):
            best = record
        if steps_busy(best) <= IDLE_BUSY_MAX:
            break
    return best


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs", nargs="+", default=list(CONFIG_NAMES), choices=CONFIG_NAMES
    )
    parser.add_argument("--steps", type=int, default=STEPS, help="timed steps (ours)")
    parser.add_argument(
        "--reference-steps",
        type=int,
        default=None,
        help="timed steps of the reference (default: --steps)",
    )
    parser.add_argument(
        "--reference-repo",
        type=pathlib.Path,
        help="checkout of google-research/spherical-cnn",
    )
    parser.add_argument(
        "--reference-python",
        type=pathlib.Path,
        help="Python with jax, flax, optax, einshape, spherical, sympy installed",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="keras_sphere on this many virtual CPU devices under data_parallel() "
        "(the reference always runs on one device)",
    )
    parser.add_argument("--json", type=pathlib.Path, default=DEFAULT_JSON)
    add_load_arguments(
        parser, "rerun a case up to N times while other processes disturbed its steps"
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (args.reference_repo is None) != (args.reference_python is None):
        parser.error("--reference-repo and --reference-python go together")
    if args.reference_steps is None:
        args.reference_steps = args.steps
    if args.devices < 1:
        parser.error("--devices must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.case:
        case_main(args.case)
        return
    info = environment(args)
    print_environment(info, DTYPE)
    sides = ["keras_sphere"]
    if args.reference_repo is None:
        print("note: no --reference-repo / --reference-python: reference skipped")
    else:
        sides.append("reference")
    started = time.perf_counter()
    results = []
    for name in args.configs:
        for side in sides:
            if side == "reference" and name in OURS_ONLY:
                continue
            record = run_case(name, side, args, started)
            results.append(record)
    info["load_average_end"] = os.getloadavg()
    info["total_s"] = time.perf_counter() - started
    summary = summarize(results, args.configs)
    print()
    print(
        "training steps per second (ratio = ours / reference; target >= "
        f"{TARGET_SPEEDUP:.0f}x)"
    )
    print(table(results, summary))
    busy_cases = [r for r in results if steps_busy(r) > IDLE_BUSY_MAX]
    if busy_cases:
        print(
            f"warning: during the timed steps of {len(busy_cases)} of {len(results)} "
            f"cases, other processes used over {IDLE_BUSY_MAX:.0%} of the CPU; their "
            "timings are pessimistic (others_busy_steps in the JSON)"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {"environment": info, "summary": summary, "results": results}
    args.json.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
