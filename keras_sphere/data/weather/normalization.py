"""Channels and their normalisation: from a WB2 dataset to the forecaster's arrays.

The forecaster sees one real array (..., n_lat, n_lon, channels) per time: first the
scalar channels (each scalar variable at each level, variable-major), then u at each
wind level, then v at the same levels (`ChannelLayout`). Statistics are computed on
the training split only, area-weighted with the grid's quadrature weights, and are
immutable (the reference code mutated its statistics in place on every call):

* a scalar channel: (x - mean) / std;
* wind: u / s and v / s with one scale s per level, s^2 = mean(u^2 + v^2) / 2, and no
  mean subtracted. A constant (u, v) pair is not a rotation-invariant field, and
  separate scales for u and v would not commute with rotating the wind (spin 1);
* `delta_std`: the standard deviation of the normalised 6 h differences per channel
  (shared by u and v of a level, for the same reason): the forecaster predicts
  differences in these units.

`Normalization.to_dict` / `from_dict` give the JSON stored with a preset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from keras_sphere.data.weather.wb2 import WIND_PAIRS
from keras_sphere.sphere import Grid

__all__ = ["ChannelLayout", "Normalization", "compute_normalization"]


@dataclasses.dataclass(frozen=True)
class ChannelLayout:
    """Which WB2 variable and level each channel holds.

    Args:
        scalars: scalar variable names (spin 0), e.g. ("geopotential", "temperature").
        levels: pressure levels in hPa shared by every variable (empty for
            single-level variables).
        wind: the (u, v) variable names, or None for no wind.
    """

    scalars: tuple[str, ...]
    levels: tuple[int, ...]
    wind: tuple[str, str] | None = ("u_component_of_wind", "v_component_of_wind")

    def __post_init__(self):
        object.__setattr__(self, "scalars", tuple(self.scalars))
        object.__setattr__(self, "levels", tuple(int(v) for v in self.levels))
        if self.wind is not None:
            object.__setattr__(self, "wind", tuple(self.wind))
            u, v = self.wind
            if WIND_PAIRS.get(u) != v:
                raise ValueError(
                    f"wind must be a (u, v) pair of WB2 names, one of "
                    f"{list(WIND_PAIRS.items())}; received {self.wind}."
                )

    @classmethod
    def from_variables(cls, variables: Sequence[str], levels: Sequence[int]):
        """Split WB2 names into scalars and the wind pair (at most one pair)."""
        pairs = [(u, v) for u, v in WIND_PAIRS.items() if u in variables]
        if len(pairs) > 1:
            raise ValueError(f"one wind pair at most; received {pairs}.")
        winds = {name for pair in pairs for name in pair}
        scalars = tuple(name for name in variables if name not in winds)
        return cls(scalars, tuple(levels), pairs[0] if pairs else None)

    @property
    def _per_variable(self) -> int:
        return max(len(self.levels), 1)

    @property
    def num_scalar_channels(self) -> int:
        return len(self.scalars) * self._per_variable

    @property
    def num_wind_levels(self) -> int:
        return 0 if self.wind is None else self._per_variable

    @property
    def num_channels(self) -> int:
        return self.num_scalar_channels + 2 * self.num_wind_levels

    @property
    def variables(self) -> tuple[str, ...]:
        return self.scalars + (() if self.wind is None else self.wind)

    @property
    def channel_names(self) -> list[str]:
        """Names "variable/level" per channel (the variable alone without levels)."""
        suffixes = [f"/{level}" for level in self.levels] or [""]
        return [f"{name}{suffix}" for name in self.variables for suffix in suffixes]

    def stack(self, dataset) -> np.ndarray:
        """Fields of `dataset` (time, [level,] lat, lon) -> (time, lat, lon, channels).

        Float32; the dataset must hold the layout's variables and levels.
        """
        blocks = []
        for name in self.variables:
            array = dataset[name]
            if self.levels:
                array = array.sel(level=list(self.levels)).transpose(
                    "time", "latitude", "longitude", "level"
                )
                blocks.append(np.asarray(array.values, dtype=np.float32))
            else:
                values = array.transpose("time", "latitude", "longitude").values
                blocks.append(np.asarray(values, dtype=np.float32)[..., None])
        return np.concatenate(blocks, axis=-1)

    def unstack(self, array: np.ndarray) -> dict[str, np.ndarray]:
        """(..., lat, lon, channels) -> {variable: (..., [level,] lat, lon)}."""
        array = np.asarray(array)
        if array.shape[-1] != self.num_channels:
            raise ValueError(
                f"expected {self.num_channels} channels ({self.channel_names}); "
                f"received shape {array.shape}."
            )
        out = {}
        per = self._per_variable
        for index, name in enumerate(self.variables):
            block = array[..., index * per : (index + 1) * per]
            block = np.moveaxis(block, -1, -3)  # (..., level, lat, lon)
            out[name] = block if self.levels else block[..., 0, :, :]
        return out

    def to_dict(self) -> dict:
        return {
            "scalars": list(self.scalars),
            "levels": list(self.levels),
            "wind": None if self.wind is None else list(self.wind),
        }

    @classmethod
    def from_dict(cls, config: dict):
        wind = config.get("wind")
        return cls(config["scalars"], config["levels"], None if wind is None else wind)


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Per-channel statistics (float64 tuples, so the object is immutable).

    Attributes:
        layout: the `ChannelLayout` the statistics belong to.
        mean, std: per channel; wind channels have mean 0 and the level's shared scale.
        delta_std: std of the normalised 6 h differences per channel.
    """

    layout: ChannelLayout
    mean: tuple[float, ...]
    std: tuple[float, ...]
    delta_std: tuple[float, ...]

    def __post_init__(self):
        for name in ("mean", "std", "delta_std"):
            values = tuple(float(v) for v in np.asarray(getattr(self, name)).ravel())
            if len(values) != self.layout.num_channels:
                raise ValueError(
                    f"Normalization.{name} has {len(values)} values for "
                    f"{self.layout.num_channels} channels."
                )
            if name != "mean" and not all(np.isfinite(values) & (np.array(values) > 0)):
                raise ValueError(f"Normalization.{name} must be finite and positive.")
            object.__setattr__(self, name, values)

    def normalize(self, fields: np.ndarray) -> np.ndarray:
        """Physical (..., channels) -> normalised, float32."""
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return (np.asarray(fields, np.float32) - mean) / std

    def denormalize(self, fields: np.ndarray) -> np.ndarray:
        """Normalised (..., channels) -> physical units, float32."""
        std = np.asarray(self.std, np.float32)
        return np.asarray(fields, np.float32) * std + np.asarray(self.mean, np.float32)

    def to_dict(self) -> dict:
        return {
            "layout": self.layout.to_dict(),
            "channel_names": self.layout.channel_names,
            "mean": list(self.mean),
            "std": list(self.std),
            "delta_std": list(self.delta_std),
        }

    @classmethod
    def from_dict(cls, config: dict):
        return cls(
            ChannelLayout.from_dict(config["layout"]),
            config["mean"],
            config["std"],
            config["delta_std"],
        )


def _weighted_moments(fields: np.ndarray, weights: np.ndarray):
    """Area-weighted sums over (time, lat, lon) per channel: (sum w, sum w x, ...)."""
    w = weights[None, :, None, None]
    total = w.sum() * fields.shape[0] * fields.shape[2]
    first = (w * fields).sum(axis=(0, 1, 2))
    second = (w * fields**2).sum(axis=(0, 1, 2))
    return total, first, second


def compute_normalization(
    dataset, layout: ChannelLayout, grid: Grid, *, chunk: int = 256
) -> Normalization:
    """Statistics of `dataset` (the training split, on `grid`) for `layout`.

    Streams over time in chunks of `chunk` steps (float64 sums), so a dataset on
    disk is never loaded whole. Differences are taken between consecutive times
    (the dataset is 6-hourly, as `open_wb2` checks).

    Returns:
        A `Normalization`; its ``to_dict()`` is what a preset stores.
    """
    weights = np.asarray(grid.weights, np.float64)
    n_time = dataset.sizes["time"]
    if n_time < 2:
        raise ValueError("compute_normalization needs at least 2 time steps.")
    n_channels = layout.num_channels
    sums = np.zeros((3, n_channels))
    for start in range(0, n_time, chunk):
        fields = layout.stack(dataset.isel(time=slice(start, start + chunk)))
        total, first, second = _weighted_moments(fields.astype(np.float64), weights)
        sums[0] += total
        sums[1] += first
        sums[2] += second
    mean = sums[1] / sums[0]
    variance = sums[2] / sums[0] - mean**2
    scalar = layout.num_scalar_channels
    wind = layout.num_wind_levels
    if wind:
        # u and v of a level share one scale and keep their mean (zero here).
        u_squares = sums[2][scalar : scalar + wind]
        v_squares = sums[2][scalar + wind :]
        shared = (u_squares + v_squares) / (2 * sums[0][scalar : scalar + wind])
        mean[scalar:] = 0.0
        variance[scalar:] = np.tile(shared, 2)
    std = np.sqrt(np.maximum(variance, 0.0))
    std = np.where(std > 0, std, 1.0)

    # Second pass: normalised 6 h differences (mean included, as the model adds no
    # mean difference; for a long run it is near zero).
    delta_sums = np.zeros((2, n_channels))
    previous = None
    for start in range(0, n_time, chunk):
        fields = layout.stack(dataset.isel(time=slice(start, start + chunk)))
        fields = (fields.astype(np.float64) - mean) / std
        if previous is not None:  # the difference across the chunk boundary
            fields = np.concatenate([previous, fields], axis=0)
        deltas = np.diff(fields, axis=0)
        total, _, second = _weighted_moments(deltas, weights)
        delta_sums[0] += total
        delta_sums[1] += second
        previous = fields[-1:]
    delta_variance = delta_sums[1] / delta_sums[0]
    if wind:
        shared = (
            delta_variance[scalar : scalar + wind] + delta_variance[scalar + wind :]
        ) / 2
        delta_variance[scalar:] = np.tile(shared, 2)
    delta_std = np.sqrt(delta_variance)
    delta_std = np.where(delta_std > 0, delta_std, 1.0)
    return Normalization(layout, mean, std, delta_std)
