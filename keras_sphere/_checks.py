"""Checks of user data at the entry points: refuse NaN and infinity, name the examples.

Layers run inside compiled steps and check nothing per call, so a NaN in an input
flows through them into the outputs (or the loss) silently. The functions users hand
arrays to (the tasks' ``predict``, the data loaders) check once, on the host, here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_finite"]

# How many offending indices a message lists before "...".
_SHOWN = 5


def check_finite(array, what: str, axis: int | None = 0, *, hint: str | None = None):
    """Return `array` unchanged, or raise if it holds NaN or infinite values.

    Args:
        array: array-like (NumPy, JAX, memory map, nested lists); integer and
            boolean arrays are always finite and pass without a pass over the data.
        what: the argument's name for the message, e.g. "maps".
        axis: the axis of examples; the message names the offending indices along
            it. None: the array is one example; the message names positions.
        hint: what the caller should do instead, replacing the default advice.

    Returns:
        `array` itself.

    Raises:
        ValueError: naming how many examples (or values) are not finite, the first
            few indices, and what to do.
    """
    values = np.asarray(array)
    if not np.issubdtype(values.dtype, np.inexact):
        return array
    finite = np.isfinite(values)
    if finite.all():
        return array
    n_nan = int(np.count_nonzero(np.isnan(values)))
    counts = f"{n_nan} NaN and {finite.size - int(finite.sum()) - n_nan} infinite"
    if axis is None or values.ndim == 0:
        where = [tuple(int(i) for i in index) for index in np.argwhere(~finite)]
        if values.ndim == 1:
            where = [index[0] for index in where]
        plural = "s" if len(where) > 1 else ""
        message = (
            f"{what} has {len(where)} non-finite value{plural} ({counts}) among "
            f"{values.size}, at {_listed(where)}."
        )
        advice = (
            "Repair them first (fill masked regions, or np.nan_to_num where a fill "
            "value is meaningful)."
        )
    else:
        axis = axis % values.ndim
        per_example = np.moveaxis(finite, axis, 0).reshape(values.shape[axis], -1)
        bad = np.flatnonzero(~per_example.all(axis=1)).tolist()
        message = (
            f"{what} has NaN or infinite values ({counts} entries) in {len(bad)} of "
            f"{values.shape[axis]} examples, at indices {_listed(bad)} along axis "
            f"{axis}."
        )
        advice = (
            "Drop or repair those examples and call again, e.g. keep = "
            f"np.isfinite({what}).reshape(len({what}), -1).all(axis=1) and pass "
            f"{what}[keep]."
            if axis == 0
            else "Drop or repair those examples and call again."
        )
    raise ValueError(f"{message} {hint or advice}")


def _listed(items: list) -> str:
    shown = ", ".join(str(item) for item in items[:_SHOWN])
    return f"[{shown}, ...]" if len(items) > _SHOWN else f"[{shown}]"
