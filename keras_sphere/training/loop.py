"""The one training loop of the zoo's recipes: long fits that survive interruptions.

`fit_run(model, batches, run_dir, ...)` wraps `model.fit` with what a recipe that
trains for hours in the background needs:

- resumption: the back-up of `resumable_callbacks` (weights, optimizer, epoch) in
  ``run_dir/backup``, written at the end of every epoch (make epochs short with
  ``ResumableBatches(steps_per_epoch=...)``: that is the checkpoint interval);
- the best weights so far by a validation metric, ``run_dir/best.weights.h5``;
- a NaN loss stops training (`keras.callbacks.TerminateOnNaN`) without overwriting
  the last good back-up or best weights, and raises `FloatingPointError`;
- a wall-clock budget (`max_hours`): training stops at the first epoch end past it,
  and the next call continues from there;
- the history of every epoch in ``run_dir/history.csv`` (appended across restarts)
  and the learning curve ``run_dir/learning_curve.png`` redrawn after each epoch;
- the wall seconds spent, summed over calls in ``run_dir/compute.json`` and
  brought up to date at every epoch end, so a killed call loses at most one epoch
  of them (read them with `compute_seconds`);
- Keras' progress bar (``verbose=1``) or one line per epoch (``verbose=2``).

A run whose directory was lost (its back-up with it) can go on from the weights it
shipped: `continue_from_weights` starts a new run directory from them at the
schedule's step and records in ``run_dir/inherited.json`` (`inherited_of`) the
epochs, steps and hours that made them, which the recipes' exports add to their
cards; only the optimizer's moments are lost.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import platform
import time

import keras

from keras_sphere._cache import cache_root
from keras_sphere._cache import home_cache_root
from keras_sphere.training.checkpoints import ResumableBatches
from keras_sphere.training.checkpoints import _FollowEpoch

__all__ = [
    "compute_seconds",
    "continue_from_weights",
    "default_run_dir",
    "fit_run",
    "has_backup",
    "inherited_of",
    "lineage_totals",
    "read_history",
]

BEST_WEIGHTS = "best.weights.h5"
HISTORY = "history.csv"
CURVE = "learning_curve.png"
COMPUTE = "compute.json"
BACKUP = "backup"
INHERITED = "inherited.json"


def default_run_dir(name: str) -> pathlib.Path:
    """``$KERAS_SPHERE_CACHE/runs/name`` (default ``~/.cache/keras_sphere/runs``).

    Runs are not a cache: with the caches turned off they stay in the default root.
    """
    return (cache_root() or home_cache_root()) / "runs" / name


class _FiniteBackup(keras.callbacks.BackupAndRestore):
    """A back-up that is never overwritten by weights from a NaN epoch."""

    def on_epoch_end(self, epoch, logs=None):
        if _finite_logs(logs) and not getattr(self.model, "_stopped_on_nan", False):
            super().on_epoch_end(epoch, logs)


class _StopOnNaN(keras.callbacks.TerminateOnNaN):
    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model._stopped_on_nan = True
        super().on_batch_end(batch, logs)


class _BestWeights(keras.callbacks.ModelCheckpoint):
    def on_epoch_end(self, epoch, logs=None):
        if _finite_logs(logs):
            super().on_epoch_end(epoch, logs)


class _StopAfter(keras.callbacks.Callback):
    """Stops at the first epoch end after `deadline` (time.time())."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline
        self.stopped_for_time = False

    def on_epoch_end(self, epoch, logs=None):
        if time.time() > self.deadline:
            self.stopped_for_time = True
            self.model.stop_training = True


class _History(keras.callbacks.Callback):
    """Appends each epoch's logs (with wall time) to a CSV and redraws the curve."""

    def __init__(self, run_dir: pathlib.Path, curve_metrics):
        super().__init__()
        self.path = run_dir / HISTORY
        self.curve_path = run_dir / CURVE
        self.curve_metrics = curve_metrics
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "seconds": round(time.time() - self.started, 1)}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        rows = read_history(self.path) if self.path.exists() else []
        # Earlier rows come back as floats: keep the epoch column whole numbers.
        rows = [{**r, "epoch": int(r["epoch"])} for r in rows if r["epoch"] < epoch + 1]
        rows.append(row)
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with open(self.path, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fields)
            writer.writeheader()
            writer.writerows(rows)
        self.started = time.time()
        from keras_sphere.plotting import plot_learning_curves

        plot_learning_curves(rows, self.curve_path, self.curve_metrics)


class _Compute(keras.callbacks.Callback):
    """Adds the wall seconds since the last mark to ``compute.json``.

    At each epoch end, and (`add_remainder`) when the call ends.
    """

    def __init__(self, run_dir: pathlib.Path, started: float):
        super().__init__()
        self.path = run_dir / COMPUTE
        self.mark = started

    def on_epoch_end(self, epoch, logs=None):
        self.add_remainder()

    def add_remainder(self) -> None:
        now = time.time()
        compute = {"wall_seconds": compute_seconds(self.path.parent)}
        compute["wall_seconds"] += now - self.mark
        compute["machine"] = f"{platform.processor() or platform.machine()}, CPU"
        self.path.write_text(json.dumps(compute, indent=2))
        self.mark = now


def compute_seconds(run_dir: str | os.PathLike) -> float:
    """The wall seconds `fit_run` calls in `run_dir` have spent (0 for none)."""
    path = pathlib.Path(run_dir) / COMPUTE
    return json.loads(path.read_text())["wall_seconds"] if path.exists() else 0.0


def has_backup(run_dir: str | os.PathLike) -> bool:
    """Whether `fit_run` left a back-up in `run_dir` (its next call resumes it)."""
    return (pathlib.Path(run_dir) / BACKUP).exists()


def continue_from_weights(
    model: keras.Model,
    weights: list,
    run_dir: str | os.PathLike,
    *,
    keras_epochs: int,
    steps: int,
    wall_seconds: float,
    source: str,
    **details,
) -> dict:
    """Start a new run in `run_dir` from `weights` trained by an earlier run.

    For a recipe whose run directory was lost but whose best weights shipped: the
    model takes them, its optimizer's step becomes `steps` (so the learning-rate
    schedule goes on where they were made; Adam's moments start afresh and rebuild
    within a few hundred steps), and ``run_dir/inherited.json`` records what made
    them for the recipe's export. Call it on a compiled model before `fit_run`,
    and give `fit_run` the epochs that remain (the recipe's total less
    `keras_epochs`).

    Args:
        model: the recipe's compiled model, of the architecture that made them.
        weights: `get_weights()` of the earlier run's model.
        run_dir: the new run's directory (without a back-up).
        keras_epochs: Keras epochs that made the weights.
        steps: optimizer steps that made the weights.
        wall_seconds: wall seconds that made the weights.
        source: where the weights come from, for the card.
        **details: more JSON-serialisable facts to record.

    Returns:
        The record, as `inherited_of(run_dir)` returns it.

    Raises:
        ValueError: `run_dir` holds a back-up (resume it instead), or the weights
            are not those of the model's architecture.
    """
    run_dir = pathlib.Path(run_dir)
    if has_backup(run_dir):
        raise ValueError(
            f"{run_dir} holds a back-up: fit_run resumes it. Continue from other "
            "weights only in a run directory without one."
        )
    own = model.get_weights()
    shapes = [tuple(w.shape) for w in own]
    if len(weights) != len(own) or shapes != [tuple(w.shape) for w in weights]:
        raise ValueError(
            f"The weights of {source} do not fit this model ({len(weights)} arrays "
            f"for its {len(own)}, or other shapes): was the recipe's architecture "
            "changed since they were made? Train from scratch in a new run "
            "directory instead."
        )
    model.set_weights(weights)
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(int(steps))
    record = {
        "keras_epochs": int(keras_epochs),
        "steps": int(steps),
        "wall_seconds": float(wall_seconds),
        "from": source,
        **details,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / INHERITED).write_text(json.dumps(record, indent=2))
    return record


def inherited_of(run_dir: str | os.PathLike) -> dict:
    """What `continue_from_weights` recorded in `run_dir` ({} for none).

    Keys "keras_epochs", "steps", "wall_seconds", "from" and any details.
    """
    path = pathlib.Path(run_dir) / INHERITED
    return json.loads(path.read_text()) if path.exists() else {}


def lineage_totals(run_dir: str | os.PathLike, steps_per_epoch: int) -> dict:
    """Keras epochs, optimizer steps and wall seconds of the weights in `run_dir`.

    The run's own (from ``history.csv``; its wall seconds are the larger of
    ``compute.json`` and the history's per-epoch seconds, since a call killed
    before compute.json was kept per epoch lost its seconds there) plus what it
    inherited (`continue_from_weights`).
    """
    run_dir = pathlib.Path(run_dir)
    history = read_history(run_dir / HISTORY)
    inherited = inherited_of(run_dir)
    epochs = int(history[-1]["epoch"])
    seconds = max(compute_seconds(run_dir), sum(r["seconds"] for r in history))
    return {
        "epochs": epochs + inherited.get("keras_epochs", 0),
        "steps": epochs * int(steps_per_epoch) + inherited.get("steps", 0),
        "wall_seconds": seconds + inherited.get("wall_seconds", 0.0),
    }


def _finite_logs(logs) -> bool:
    return all(math.isfinite(float(v)) for v in (logs or {}).values())


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a ``history.csv`` written by `fit_run` (numbers as floats)."""
    with open(path, newline="") as stream:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(stream)
        ]


def fit_run(
    model: keras.Model,
    batches: ResumableBatches,
    run_dir: str | os.PathLike,
    *,
    epochs: int,
    validation_data=None,
    monitor: str = "val_loss",
    mode: str = "min",
    max_hours: float | None = None,
    curve_metrics=("loss", "val_loss"),
    callbacks=(),
    verbose: int | str = 1,
    started: float | None = None,
) -> dict:
    """Fit `model` on `batches` in `run_dir`, resuming whatever ran there before.

    Args:
        model: a compiled, built model.
        batches: the training `ResumableBatches`; its ``steps_per_epoch`` sets the
            checkpoint interval.
        run_dir: the run's directory (created); see the module docstring.
        epochs: total epochs of the run (the same on every restart).
        validation_data: as `keras.Model.fit` (arrays or a dataset).
        monitor: the log that picks the best weights.
        mode: "min" or "max" for `monitor`.
        max_hours: wall-clock budget of this call; None for no limit.
        curve_metrics: logs drawn in the learning curve.
        callbacks: more callbacks.
        verbose: as `keras.Model.fit`.
        started: `time.time()` when the caller began this call's work (loading
            data, building the model), counted in ``compute.json``; None for now.

    Returns:
        dict with "history" (this call's `History.history`), "finished" (all
        epochs done), "stopped_for_time", "best_weights" (path or None).

    Raises:
        FloatingPointError: the loss became NaN or infinite; the back-up and best
            weights are those of the last good epoch.
    """
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    compute = _Compute(run_dir, time.time() if started is None else started)
    model._stopped_on_nan = False
    # The back-up of `resumable_callbacks`, guarded against NaN epochs and kept
    # when fit ends (a later call with more epochs continues from it).
    backup = _FiniteBackup(
        str(run_dir / BACKUP),
        save_freq="epoch",
        double_checkpoint=True,
        delete_checkpoint=False,
    )
    best_path = run_dir / BEST_WEIGHTS
    stop_after = _StopAfter(
        math.inf if max_hours is None else time.time() + 3600.0 * max_hours
    )
    all_callbacks = [
        _StopOnNaN(),
        backup,
        _FollowEpoch(batches),
        _History(run_dir, curve_metrics),
        compute,
        stop_after,
        *callbacks,
    ]
    if validation_data is not None:
        all_callbacks.insert(
            2,
            _BestWeights(
                str(best_path),
                monitor=monitor,
                mode=mode,
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=_best_so_far(run_dir / HISTORY, monitor, mode),
            ),
        )
    try:
        history = model.fit(
            batches,
            epochs=epochs,
            validation_data=validation_data,
            shuffle=False,
            callbacks=all_callbacks,
            verbose=verbose,
        )
    finally:
        compute.add_remainder()
    if model._stopped_on_nan:
        raise FloatingPointError(
            f"The training loss became NaN or infinite; training stopped. The last "
            f"good back-up is in {backup.backup_dir} and the best weights in "
            f"{best_path}. Lower the learning rate or check the data, then run again."
        )
    rows = read_history(run_dir / HISTORY) if (run_dir / HISTORY).exists() else []
    done = bool(rows) and int(rows[-1]["epoch"]) >= epochs
    return {
        "history": history.history,
        "finished": done,
        "stopped_for_time": stop_after.stopped_for_time,
        "best_weights": str(best_path) if best_path.exists() else None,
    }


def _best_so_far(path: pathlib.Path, monitor: str, mode: str) -> float | None:
    """The best `monitor` of earlier calls, so a restart keeps the better weights."""
    if not path.exists():
        return None
    values = [row[monitor] for row in read_history(path) if monitor in row]
    if not values:
        return None
    return min(values) if mode == "min" else max(values)
