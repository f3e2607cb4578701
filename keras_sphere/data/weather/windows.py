"""Training windows (state, next states) streamed from a WB2-layout dataset.

A window starting at time t is the normalised state at t and the `steps` states after
it, 6 h apart. Batches are read from the dataset when asked for (a zarr store opened
with `open_wb2` stays on disk), so years of data never sit in memory. The rollout
length can change between epochs (`set_steps`, or a `curriculum` of epoch -> steps).

The order of windows depends only on the seed and the epoch (`start_epoch`), so a
run resumed by `keras_sphere.training.fit_run` sees the batches an uninterrupted run
would have seen.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_sphere.data.weather.normalization import Normalization

__all__ = ["WeatherWindows"]


class WeatherWindows(keras.utils.PyDataset):
    """Batches of (state, targets) for `WeatherForecaster.fit`.

    Args:
        dataset: an `xarray.Dataset` on the model grid (dims time, [level,]
            latitude, longitude), 6-hourly, e.g. one split of `split_by_time`.
        normalization: the training split's `Normalization` (its layout picks the
            channels).
        steps: rollout length: targets are the next `steps` states.
        batch_size: windows per batch.
        shuffle: shuffle window starts each epoch (seeded by `seed` and the epoch).
        seed: shuffling seed.
        stride: time steps between consecutive window starts (1 = every 6 h).
        curriculum: optional function epoch -> rollout length, applied by
            `start_epoch` (e.g. `WeatherForecaster`'s `rollout_curriculum`).
        steps_per_epoch: batches per Keras epoch (default: one pass over the
            windows). Epochs then walk through an endless sequence of passes, each
            shuffled by (seed, pass), so epochs can be short (checkpoints) without
            repeating windows.
        **kwargs: `keras.utils.PyDataset` options (workers, use_multiprocessing).

    Batches: state (batch, n_lat, n_lon, channels) float32 and targets (batch,
    steps, n_lat, n_lon, channels) float32, both normalised.
    """

    def __init__(
        self,
        dataset,
        normalization: Normalization,
        *,
        steps: int = 1,
        batch_size: int = 8,
        shuffle: bool = True,
        seed: int = 0,
        stride: int = 1,
        curriculum=None,
        steps_per_epoch: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dataset = dataset
        self.normalization = normalization
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.stride = int(stride)
        if self.batch_size < 1 or self.stride < 1:
            raise ValueError("batch_size and stride must be >= 1.")
        self._epoch = 0
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1.")
        self.curriculum = curriculum
        self.set_steps(curriculum(0) if curriculum is not None else steps)

    def set_steps(self, steps: int) -> None:
        """Use rollouts of `steps` states from now on (a curriculum calls this)."""
        steps = int(steps)
        n_time = self.dataset.sizes["time"]
        if steps < 1 or steps >= n_time:
            raise ValueError(
                f"steps must be between 1 and {n_time - 1} for a dataset of {n_time} "
                f"times; received {steps}."
            )
        self.steps = steps
        self._starts = np.arange(0, n_time - steps, self.stride)
        self._order = self._shuffled(self._epoch)

    def _shuffled(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self._starts
        rng = np.random.default_rng([self.seed, epoch])
        return rng.permutation(self._starts)

    @property
    def num_windows(self) -> int:
        return int(self._starts.size)

    @property
    def batches_per_pass(self) -> int:
        return math.ceil(self.num_windows / self.batch_size)

    def __len__(self) -> int:
        return self.steps_per_epoch or self.batches_per_pass

    def window(self, start: int) -> np.ndarray:
        """Normalised states start .. start + steps: (steps + 1, lat, lon, channels)."""
        return self.windows([start])[0]

    def windows(self, starts) -> np.ndarray:
        """Windows at `starts`: (len(starts), steps + 1, lat, lon, channels).

        One read of every variable for all of them: a dask-backed (zarr) dataset
        computes one graph per batch rather than one per variable and window,
        whose overhead (about 40 ms each) cost more than a training step.
        """
        times = (np.asarray(starts)[:, None] + np.arange(self.steps + 1)).ravel()
        variables = list(self.normalization.layout.variables)
        block = self.dataset[variables].isel(time=times).load()
        fields = self.normalization.normalize(self.normalization.layout.stack(block))
        return fields.reshape(len(starts), self.steps + 1, *fields.shape[1:])

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        order, index = self._order, index
        if self.steps_per_epoch is not None:  # position in the endless sequence
            passes, index = divmod(
                self._epoch * self.steps_per_epoch + index, self.batches_per_pass
            )
            order = self._shuffled(passes)
        starts = order[index * self.batch_size : (index + 1) * self.batch_size]
        windows = self.windows(starts)
        return windows[:, 0], windows[:, 1:]

    def start_epoch(self, epoch: int) -> None:
        """Serve epoch `epoch`: its rollout length and its order of windows."""
        self._epoch = int(epoch)
        if self.curriculum is not None:
            self.set_steps(self.curriculum(self._epoch))  # also reshuffles
        else:
            self._order = self._shuffled(self._epoch)

    def on_epoch_end(self) -> None:
        self.start_epoch(self._epoch + 1)
