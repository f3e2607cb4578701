"""Start a Held-Suarez run from another run's state (e.g. T85 from a spun-up T42).

A run at high truncation needs a long spin-up from rest (about 200 days) at its own,
high cost per day. Starting it from the checkpoint of a cheaper run that is already
statistically steady leaves only the adjustment of the newly resolved scales (tens
of days). The source's modal state is interpolated exactly in the horizontal: the
spherical-harmonic coefficients are zero-padded above the source's truncation (or
cut above the target's), as dinosaur's ``get_spectral_interpolate_fn`` does; and
linearly in sigma between layer centres when the numbers of layers differ (constant
beyond the outermost centres). Both maps are linear, so they act on the modal
coefficients directly.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

__all__ = ["describe_start", "read_start", "restart_arrays", "sigma_interpolation"]

# Fields of dinosaur's primitive-equations State with one entry per sigma layer.
_LAYERED = ("vorticity", "divergence", "temperature_variation")


def sigma_interpolation(source_layers: int, target_layers: int) -> np.ndarray:
    """(target, source) float64 weights from equidistant sigma layers to others.

    Linear in sigma between layer centres ``(k + 1/2) / n``; constant beyond the
    outermost centres. Rows sum to one.
    """
    source = (np.arange(source_layers) + 0.5) / source_layers
    target = (np.arange(target_layers) + 0.5) / target_layers
    # Column k: the interpolant of the k-th unit vector, evaluated at the targets.
    unit = np.eye(source_layers)
    return np.stack(
        [np.interp(target, source, unit[k]) for k in range(source_layers)], axis=1
    )


def read_start(path: str | pathlib.Path) -> tuple[dict, dict, float]:
    """(state arrays, the source run's config, its simulated days) of a checkpoint.

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: the file is not a `simulate_held_suarez` checkpoint.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"start_from={str(path)!r} does not exist: pass the checkpoint of "
            "another run, '<run path>.checkpoint.npz'."
        )
    with np.load(path) as stored:
        if "config" not in stored.files or "done" not in stored.files:
            raise ValueError(
                f"{path} is not a simulate_held_suarez checkpoint (no config or "
                "done entries)."
            )
        config = json.loads(str(stored["config"]))
        days = int(stored["done"]) / 4
        arrays = {
            k[len("state_") :]: np.array(stored[k])
            for k in stored.files
            if k.startswith("state_")
        }
    return arrays, config, days


def restart_arrays(arrays: dict, modal_shape: tuple, n_sigma_levels: int) -> dict:
    """Modal state arrays moved to another truncation and number of layers.

    Args:
        arrays: dinosaur State fields, each (layers, m, l) modal coefficients
            (log_surface_pressure has one layer).
        modal_shape: the target's modal shape (m, l).
        n_sigma_levels: the target's number of equidistant sigma layers.

    Returns:
        dict of the same fields at `modal_shape` and `n_sigma_levels` layers.
    """
    out = {}
    for name, values in arrays.items():
        values = np.asarray(values)
        if name in _LAYERED and values.shape[0] != n_sigma_levels:
            weights = sigma_interpolation(values.shape[0], n_sigma_levels)
            values = np.einsum("ts,s...->t...", weights, values).astype(values.dtype)
        cut = values[..., : modal_shape[0], : modal_shape[1]]
        pad = [(0, 0)] * (values.ndim - 2) + [
            (0, modal_shape[0] - cut.shape[-2]),
            (0, modal_shape[1] - cut.shape[-1]),
        ]
        out[name] = np.pad(cut, pad)
    return out


def describe_start(path: str | pathlib.Path, truncation: int, layers: int) -> str:
    """The initial-condition attribute of a run started from checkpoint `path`."""
    _, config, days = read_start(path)
    return (
        f"the state of a Held-Suarez run at T{config['truncation']} with "
        f"{config['n_sigma_levels']} sigma levels after {days:g} simulated days "
        f"(seed {config['seed']}, its checkpoint {pathlib.Path(path).name}), moved "
        f"to T{truncation} by zero-padding (or cutting) its spherical-harmonic "
        f"coefficients and to {layers} sigma levels linearly in sigma"
    )
