"""`scattering_features`: batched scattering of a data set, cached on disk.

For maps of millions of pixels the scattering layer is frozen and its outputs are
computed once and stored (``models.md`` section 3); the downstream network then trains
on the small low-resolution features. This function runs the transform batch by batch
with a progress bar and, given `cache_path`, writes each finished batch to a ``.npy``
file so that an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import keras
import numpy as np

from keras_sphere import _resumable
from keras_sphere.layers.scattering_layer import scatter_channels
from keras_sphere.sphere import Grid
from keras_sphere.sphere.scattering import OUTPUTS
from keras_sphere.sphere.scattering import ScatteringNetwork

__all__ = ["scattering_features"]

_FORMAT_VERSION = 1


def _as_channel_last(maps) -> tuple[object, int]:
    """(maps as (N, n_lat, n_lon, C) view or array, C)."""
    shape = np.shape(maps)
    if len(shape) == 3:
        return maps, 0  # channel axis added per batch
    if len(shape) == 4:
        return maps, shape[3]
    if len(shape) == 5 and shape[3] == 1:
        return maps, shape[4]
    raise ValueError(
        "maps must have shape (N, n_lat, n_lon), (N, n_lat, n_lon, C) or "
        f"(N, n_lat, n_lon, 1, C). Received shape {tuple(shape)}."
    )


def _batch(maps, start: int, stop: int) -> np.ndarray:
    batch = np.asarray(maps[start:stop], dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[..., None]
    elif batch.ndim == 5:
        batch = batch[..., 0, :]
    if not np.all(np.isfinite(batch)):
        bad = np.flatnonzero(~np.isfinite(batch).reshape(len(batch), -1).all(axis=1))
        raise ValueError(
            f"Maps {[start + int(i) for i in bad]} contain NaN or inf values. Clean or "
            "drop them first: one NaN spreads to every scattering coefficient."
        )
    return batch


def _fingerprint(maps) -> str:
    """Hash of the data's shape and of its first and last maps (cheap, not complete)."""
    digest = hashlib.sha256(repr(tuple(np.shape(maps))).encode())
    for index in (0, len(maps) - 1):
        digest.update(np.ascontiguousarray(maps[index], dtype=np.float32).tobytes())
    return digest.hexdigest()[:32]


def scattering_features(
    maps,
    J0: int,  # noqa: N803
    depth: int = 2,
    oversample: int = 1,
    output: str = "spatial",
    lam: float = 2.0,
    ell_max: int | None = None,
    batch_size: int = 4,
    cache_path: str | os.PathLike | None = None,
    verbose: int = 1,
) -> np.ndarray:
    """Scattering features of many maps, batch by batch, optionally cached on disk.

    The same transform as `ScatteringLayer` without normalisation (fit statistics on
    the features, e.g. with `ScatteringLayer(normalize="standardize").adapt` or a batch
    norm in the downstream model).

    Args:
        maps: real maps (N, n_lat, n_lon), (N, n_lat, n_lon, C) or
            (N, n_lat, n_lon, 1, C): a NumPy array or a memory map (read one batch at
            a time, so data sets larger than memory work).
        J0: coarsest wavelet scale (see `ScatteringLayer`).
        depth: maximal scattering order.
        oversample: modulus sampling factor, 1 or 2 (see `ScatteringLayer`).
        output: "spatial", "spectral" or "invariant" (see `ScatteringLayer`).
        lam: wavelet dilation factor.
        ell_max: bandlimit of the analysis; default the grid's largest.
        batch_size: maps per transform call. Larger batches amortise reading the
            transform tables (at L = 1023 about 2 GB) over more maps.
        cache_path: optional ``.npy`` file. Finished batches are written to it and
            recorded in ``<cache_path>.json``; calling again with the same maps and
            settings returns the stored features (resuming an interrupted run). Other
            settings or other maps raise an error instead of mixing results.
        verbose: 1 shows a progress bar, 0 is silent.

    Returns:
        float32 (complex64 for "spectral") features: (N, n_s, n_s, C P) for
        "spatial", (N, B_s, 2 B_s - 1, C P) for "spectral", (N, C P) for "invariant"
        (C = 1 for 3-d input). A read-only memory map when `cache_path` is given.

    Raises:
        ValueError: for bad shapes, J0 too large for the maps, NaN or inf in a map, or
            a cache written for other settings or other maps.
    """
    if output not in OUTPUTS:
        raise ValueError(
            f"output must be one of {OUTPUTS}. Received: output={output!r}"
        )
    maps, channels = _as_channel_last(maps)
    n_maps, n_lat, n_lon = (int(n) for n in np.shape(maps)[:3])
    if n_maps == 0:
        raise ValueError("maps is empty: pass at least one map.")
    grid = Grid(n_lat, n_lon)
    ell_max = grid.max_bandlimit if ell_max is None else int(ell_max)
    network = ScatteringNetwork(grid, ell_max, int(J0), depth, float(lam), oversample)
    n_out = max(channels, 1) * network.n_paths
    size = network.output_bandlimit + 1
    per_map = {
        "spatial": (*network.output_grid.shape, n_out),
        "spectral": (size, 2 * size - 1, n_out),
        "invariant": (n_out,),
    }[output]
    dtype = np.complex64 if output == "spectral" else np.float32

    done = 0
    if cache_path is None:
        result = np.empty((n_maps, *per_map), dtype)
    else:
        path = pathlib.Path(cache_path)
        record_path = path.with_name(path.name + ".json")
        record = {
            "format": _FORMAT_VERSION,
            "maps": _fingerprint(maps),
            "shape": [n_maps, *per_map],
            "settings": [ell_max, int(J0), depth, float(lam), oversample, output],
        }
        specs = {"features": ((n_maps, *per_map), np.dtype(dtype).str)}
        arrays, done = _resumable.open_arrays(
            {"features": path}, record_path, record, specs
        )
        result = arrays["features"]

    plans = network.plans("float32")
    progress = keras.utils.Progbar(n_maps, verbose=verbose, unit_name="map")
    progress.update(done)
    for start in range(done, n_maps, batch_size):
        stop = min(start + batch_size, n_maps)
        batch = _batch(maps, start, stop)
        result[start:stop] = np.asarray(scatter_channels(batch, network, output, plans))
        if cache_path is not None:
            _resumable.mark_done(record_path, arrays, stop)
        progress.update(stop)
    if cache_path is not None:
        del result, arrays
        return _resumable.load_arrays({"features": path})["features"]
    return result
