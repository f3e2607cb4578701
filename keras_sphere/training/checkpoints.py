"""Training that resumes: back-ups every epoch and a data order that survives restarts.

An interrupted `fit` (pre-empted TPU VM, killed job) restarted with the same callbacks
and the same backup directory continues from the last back-up and ends with the same
weights as an uninterrupted run. What has to be restored, and how it is:

- weights, moving statistics, optimizer variables (moments, iteration count, hence the
  learning-rate schedule) and the epoch: `keras.callbacks.BackupAndRestore`, which
  saves `model.save_weights` (optimizer included) and the epoch at the end of every
  epoch; the SHT tables of `keras_sphere.layers` are rebuilt from the configuration,
  never saved;
- the data order: batches that depend only on (seed, epoch, batch index), either
  `fit(x, y, shuffle=False)` on arrays, or `ResumableBatches` (shuffled per pass with
  a generator seeded by (seed, pass), every batch full for `keras.distribution`).

Keras' `BackupAndRestore(save_freq=N)` saves mid-epoch, but on restart it replays the
interrupted epoch from its first batch, so the batches seen before the back-up are
applied twice. To checkpoint every N steps, make an epoch N steps long instead:
`ResumableBatches(..., steps_per_epoch=N)`. Random layers (dropout) restart their seed
generators on restart, which Keras does not save; see `determinism.py`.
"""

from __future__ import annotations

import math
import os

import keras
import numpy as np

from keras_sphere.distribution import check_divisible

__all__ = ["BudgetedBatches", "ResumableBatches", "resumable_callbacks"]

_REMAINDERS = ("drop", "pad")


class ResumableBatches(keras.utils.PyDataset):
    """Batches of arrays whose order depends only on (seed, epoch, batch index).

    The examples are read in passes; each pass is a fixed order of all examples
    (a permutation drawn from `numpy.random.default_rng([seed, pass])` when
    `shuffle`, else their order), cut into batches of exactly `batch_size`. Keras
    epoch e serves global batches e * steps_per_epoch ... (e + 1) * steps_per_epoch
    - 1, so an epoch may be shorter or longer than a pass, and a restarted `fit`
    sees the same batches as an uninterrupted one.

    Use it for training only, with the callback of `resumable_callbacks(...,
    batches=this)` (which tells it the epoch; a custom loop calls `start_epoch`) and
    `fit(batches, shuffle=False)`: `fit` shuffles the batch indices of a PyDataset
    with Python's global generator unless told not to, and that order would not
    survive a restart. Both mistakes raise an error at the second batch.

    Every batch is full, so its size splits over the devices of a distribution when
    `batch_size` does. At the end of a pass, the n_examples % batch_size examples
    left over are dropped (a different set each pass when shuffled) or padded with
    zero examples of sample weight 0 (`remainder="pad"`). Every array is zeroed for
    padded examples, so an array of ones in `x` becomes the per-example `mask` to
    pass to `SpectralBatchNorm` and `SphericalResBlock`.

    Args:
        x: an array, or a nest (tuple, list, dict) of arrays, of shape
            (n_examples, ...).
        y: targets, the same structure rules, or None.
        sample_weight: float array (n_examples,), or None.
        batch_size: global batch size; checked against the devices of the current
            distribution.
        steps_per_epoch: batches per Keras epoch; default one pass. Back-ups happen
            once per epoch, so this sets the checkpoint interval.
        shuffle: draw a new order for every pass.
        seed: seed of the per-pass orders.
        remainder: "drop" or "pad" the examples that do not fill a last batch.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`,
            `use_multiprocessing`, `max_queue_size`). Worker processes
            (`use_multiprocessing=True`) would not see the epoch: keep it False.

    Batches:
        (x, y, sample_weight) sliced to batch_size examples; sample_weight (float32)
        is present when given or when `remainder="pad"`, y when given.

    Raises:
        ValueError: for a batch size that does not split over the devices, fewer
            examples than one batch with remainder="drop", arrays of different
            lengths, a bad `remainder`, or steps_per_epoch < 1; when batches are
            requested out of order (`fit` without shuffle=False).
        RuntimeError: when batches are requested without `start_epoch` (the
            callback of `resumable_callbacks` is missing).
    """

    def __init__(
        self,
        x,
        y=None,
        sample_weight=None,
        *,
        batch_size: int,
        steps_per_epoch: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        remainder: str = "drop",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if remainder not in _REMAINDERS:
            raise ValueError(
                f"remainder must be 'drop' or 'pad'. Received: remainder={remainder!r}"
            )
        check_divisible(batch_size)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.remainder = remainder
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, np.float32)
        self._data = [
            keras.tree.map_structure(np.asarray, part) if part is not None else None
            for part in (x, y, sample_weight)
        ]
        sizes = {
            int(np.shape(leaf)[0])
            for part in self._data
            if part is not None
            for leaf in keras.tree.flatten(part)
        }
        if len(sizes) != 1:
            raise ValueError(
                "x, y and sample_weight must hold the same number of examples on "
                f"axis 0. Received sizes {sorted(sizes)}."
            )
        self.n_examples = sizes.pop()
        if remainder == "drop":
            self.batches_per_pass = self.n_examples // self.batch_size
        else:
            self.batches_per_pass = math.ceil(self.n_examples / self.batch_size)
        if self.batches_per_pass == 0:
            raise ValueError(
                f"{self.n_examples} examples do not fill one batch of "
                f"{self.batch_size}. Use remainder='pad' or a smaller batch size."
            )
        if steps_per_epoch is None:
            steps_per_epoch = self.batches_per_pass
        if int(steps_per_epoch) < 1:
            raise ValueError(
                f"steps_per_epoch must be >= 1. Received: {steps_per_epoch}"
            )
        self.steps_per_epoch = int(steps_per_epoch)
        self.epoch = 0
        self._order_cache = (None, None)
        self._in_epoch = False  # between start_epoch and the end of that epoch
        self._next_index = 0
        self._calls_outside_epochs = 0

    def start_epoch(self, epoch: int) -> None:
        """Serve the batches of Keras epoch `epoch` (counted from 0) from now on."""
        self.epoch = int(epoch)
        self._in_epoch = True
        self._next_index = 0
        self._calls_outside_epochs = 0

    @property
    def num_batches(self) -> int:
        return self.steps_per_epoch

    def __len__(self) -> int:
        return self.steps_per_epoch

    def _order(self, pass_index: int) -> np.ndarray:
        """Example indices of one pass, padded with -1 to whole batches, int64."""
        if self._order_cache[0] == pass_index:
            return self._order_cache[1]
        if self.shuffle:
            order = np.random.default_rng([self.seed, pass_index]).permutation(
                self.n_examples
            )
        else:
            order = np.arange(self.n_examples)
        size = self.batches_per_pass * self.batch_size
        order = np.concatenate([order, -np.ones(size, np.int64)])[:size]
        self._order_cache = (pass_index, order)
        return order

    def __getitem__(self, index: int):
        if not 0 <= index < self.steps_per_epoch:
            raise IndexError(
                f"Batch index {index} is outside [0, {self.steps_per_epoch})."
            )
        self._check_call(index)
        return self.batch(self.epoch, index)

    def _check_call(self, index: int) -> None:
        if not self._in_epoch:
            # fit takes one batch to build the model before its first epoch.
            self._calls_outside_epochs += 1
            if self._calls_outside_epochs > 1:
                raise RuntimeError(
                    "ResumableBatches does not know which epoch is running. Pass "
                    "the callbacks of resumable_callbacks(directory, batches=...) "
                    "to fit, or call start_epoch(epoch) in a custom loop. Use it "
                    "for training only (not for validation data or predict)."
                )
        elif self.workers <= 1:  # one thread: batches must come in order
            if index != self._next_index:
                raise ValueError(
                    f"Batch {index} of epoch {self.epoch} was requested before batch "
                    f"{self._next_index}: fit shuffles the batches of a PyDataset "
                    "with Python's global generator, which a restart does not "
                    "restore. Call fit(batches, ..., shuffle=False); "
                    "ResumableBatches(shuffle=True) shuffles with its own seed."
                )
            self._next_index += 1

    def batch_indices(self, epoch: int, index: int) -> np.ndarray:
        """Example indices int64 (batch_size,) of a batch; -1 marks padding."""
        step = int(epoch) * self.steps_per_epoch + int(index)
        pass_index, position = divmod(step, self.batches_per_pass)
        return self._order(pass_index)[
            position * self.batch_size : (position + 1) * self.batch_size
        ]

    def batch(self, epoch: int, index: int):
        """Batch `index` of Keras epoch `epoch`, without any bookkeeping.

        Returns:
            As ``batches[index]``: (x,), (x, y) or (x, y, sample_weight).
        """
        indices = self.batch_indices(epoch, index)
        real = indices >= 0
        safe = np.where(real, indices, 0)

        def take(array):
            batch = array[safe]
            # [batch] -> [batch, 1, ...]: zero the padded examples of any rank.
            return np.where(real.reshape(-1, *([1] * (batch.ndim - 1))), batch, 0)

        x, y, sample_weight = (
            None if part is None else keras.tree.map_structure(take, part)
            for part in self._data
        )
        if self.remainder == "pad":
            weight = real.astype(np.float32)
            sample_weight = weight if sample_weight is None else sample_weight * weight
        if sample_weight is not None:
            return x, y, sample_weight
        return (x,) if y is None else (x, y)

    def on_epoch_end(self):
        self._in_epoch = False


class BudgetedBatches(ResumableBatches):
    """`ResumableBatches` whose batches never exceed a budget of cost.

    Each example has a cost (for molecules: the number of atoms, which sets the
    work of a packed backbone). Within a batch, examples are kept in order while
    their summed cost fits `capacity`; the rest of that batch is padded (zeroed,
    sample weight 0), and those examples are seen in other passes. How often that
    happens is reported by `dropped_fraction`.

    Args:
        x, y, sample_weight: as `ResumableBatches`.
        costs: float (n_examples,), each >= 0 and <= capacity.
        capacity: the largest summed cost of a batch.
        **kwargs: `ResumableBatches` arguments (batch_size, steps_per_epoch,
            shuffle, seed, ...).

    Batches:
        (x, y, sample_weight); sample_weight is always present.
    """

    def __init__(self, x, y=None, sample_weight=None, *, costs, capacity, **kwargs):
        costs = np.asarray(costs, np.float64)
        if sample_weight is None:
            sample_weight = np.ones(len(costs), np.float32)
        super().__init__(x, y, sample_weight, **kwargs)
        if costs.shape != (self.n_examples,):
            raise ValueError(
                f"costs needs one value per example ({self.n_examples}). Received "
                f"shape {costs.shape}."
            )
        if costs.max(initial=0.0) > capacity or costs.min(initial=0.0) < 0:
            raise ValueError(
                f"Every cost must lie in [0, capacity={capacity}]. Received costs "
                f"from {costs.min()} to {costs.max()}."
            )
        self.costs = costs
        self.capacity = float(capacity)

    def kept(self, indices: np.ndarray) -> np.ndarray:
        """Bool (batch_size,): the examples of a batch that fit the budget."""
        costs = np.where(indices >= 0, self.costs[np.maximum(indices, 0)], 0.0)
        return np.cumsum(costs) <= self.capacity

    def dropped_fraction(self, epoch: int = 0) -> float:
        """Fraction of the examples of an epoch's batches left out by the budget."""
        dropped = total = 0
        for index in range(self.steps_per_epoch):
            indices = self.batch_indices(epoch, index)
            dropped += int(np.sum(~self.kept(indices) & (indices >= 0)))
            total += int(np.sum(indices >= 0))
        return dropped / max(total, 1)

    def batch(self, epoch: int, index: int):
        x, y, sample_weight = super().batch(epoch, index)
        keep = self.kept(self.batch_indices(epoch, index))

        def zero(array):
            return np.where(keep.reshape(-1, *([1] * (array.ndim - 1))), array, 0)

        x = keras.tree.map_structure(zero, x)
        if y is not None:
            y = keras.tree.map_structure(zero, y)
        return x, y, zero(sample_weight).astype(np.float32)


class _FollowEpoch(keras.callbacks.Callback):
    """Tells a `ResumableBatches` which epoch `fit` is starting."""

    def __init__(self, batches: ResumableBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.start_epoch(epoch)


def resumable_callbacks(
    directory: str | os.PathLike,
    *,
    batches: ResumableBatches | None = None,
    keep_checkpoints: bool = False,
    delete_backup_at_end: bool = True,
) -> list[keras.callbacks.Callback]:
    """Callbacks that make `model.fit` resume after an interruption.

    Run the same script again with the same `directory`: `fit` restores the last
    back-up (weights, optimizer state, epoch) and continues with the next epoch,
    ending with the weights of an uninterrupted run when the data order depends on
    the epoch only (module docstring). Pass the same `epochs` to every `fit`; the
    model must be built (a functional model is) before `fit`.

    Args:
        directory: the run's directory. The back-up lives in `directory/backup`
            (a directory `BackupAndRestore` must own alone); kept checkpoints in
            `directory/checkpoints`.
        batches: the `ResumableBatches` given to `fit`, if any: adds the callback
            that tells it which epoch is starting. Without it, pass arrays with
            `shuffle=False`: Keras shuffles arrays with NumPy's global generator,
            which a restart does not bring back to the same state. Either way,
            call `fit(..., shuffle=False)`.
        keep_checkpoints: also keep the weights of every epoch,
            `directory/checkpoints/epoch_0001.weights.h5`, ... (epochs counted
            from 1).
        delete_backup_at_end: delete the back-up when `fit` completes (Keras
            default), so the next `fit` in that directory starts afresh.

    Returns:
        A list of callbacks to pass to `fit` (with your own).

    Example:
        >>> data = ResumableBatches(  # doctest: +SKIP
        ...     x, y, batch_size=32, shuffle=True, seed=0
        ... )
        >>> callbacks = resumable_callbacks("runs/a", batches=data)  # doctest: +SKIP
        >>> model.fit(data, epochs=100, shuffle=False, callbacks=callbacks)
    """
    directory = os.fspath(directory)
    callbacks = [
        keras.callbacks.BackupAndRestore(
            os.path.join(directory, "backup"),
            save_freq="epoch",
            double_checkpoint=True,
            delete_checkpoint=delete_backup_at_end,
        )
    ]
    if batches is not None:
        if not isinstance(batches, ResumableBatches):
            raise TypeError(
                "batches must be the ResumableBatches passed to fit. Received: "
                f"{type(batches).__name__}"
            )
        callbacks.append(_FollowEpoch(batches))
    if keep_checkpoints:
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                os.path.join(directory, "checkpoints", "epoch_{epoch:04d}.weights.h5"),
                save_weights_only=True,
            )
        )
    return callbacks
