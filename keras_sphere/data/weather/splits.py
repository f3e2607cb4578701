"""Train, validation and test splits by whole blocks of time, with gaps between.

Consecutive 6-hourly states are strongly correlated (z500 anomaly autocorrelation
0.79 at one day, 0.19 at five days in the simulated atmosphere, ``data.md`` §2.2), so
splits are contiguous blocks of time separated by a gap that no split uses; a window
of a split never reaches into another split's block.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["split_by_time"]


def split_by_time(
    dataset,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    gap: str | np.timedelta64 = "5D",
    names: Sequence[str] = ("train", "validation", "test"),
) -> dict:
    """Cut `dataset` (with a 'time' dimension) into consecutive blocks with gaps.

    Args:
        dataset: an `xarray.Dataset`, 6-hourly along 'time'.
        fractions: share of the usable time of each split, in time order.
        gap: time left out between consecutive blocks (a NumPy/pandas timedelta
            string such as "5D", or a `numpy.timedelta64`).
        names: the splits' names, one per fraction.

    Returns:
        {name: dataset restricted to its block}, in time order.

    Raises:
        ValueError: if fractions do not sum to 1 or a block would be empty.
    """
    fractions = [float(f) for f in fractions]
    if len(fractions) != len(names) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(
            f"split_by_time: fractions {fractions} must sum to 1, one per name {names}."
        )
    gap = np.timedelta64(_timedelta(gap), "ns")
    times = np.asarray(dataset["time"].values).astype("datetime64[ns]")
    if times.size < 2:
        raise ValueError("split_by_time needs at least 2 time steps.")
    step = times[1] - times[0]
    gap_steps = int(np.ceil(gap / step))
    usable = times.size - gap_steps * (len(fractions) - 1)
    sizes = np.floor(np.asarray(fractions) * usable).astype(int)
    sizes[-1] = usable - sizes[:-1].sum()
    if usable <= 0 or np.any(sizes <= 0):
        raise ValueError(
            f"split_by_time: {times.size} steps cannot hold blocks {fractions} with "
            f"gaps of {gap_steps} steps ({gap})."
        )
    out = {}
    start = 0
    for name, size in zip(names, sizes, strict=True):
        out[name] = dataset.isel(time=slice(start, start + size))
        start += size + gap_steps
    return out


def _timedelta(gap) -> np.timedelta64:
    if isinstance(gap, np.timedelta64):
        return gap
    import pandas

    return pandas.Timedelta(gap).to_timedelta64()
