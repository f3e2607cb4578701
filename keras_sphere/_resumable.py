"""Arrays filled batch by batch on disk, so that an interrupted run resumes.

Each array is a ``.npy`` memory map; a JSON record next to them stores the settings
that produced them and how many leading rows are finished. Opening the arrays again
with the same record resumes after the finished rows; a different record raises
instead of mixing results. Used by `scattering_features` and `data.cmb.generate`.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping

import numpy as np

Spec = tuple[tuple[int, ...], str]  # (shape, dtype string)


def open_arrays(
    paths: Mapping[str, pathlib.Path],
    record_path: pathlib.Path,
    record: dict,
    specs: Mapping[str, Spec],
) -> tuple[dict[str, np.memmap], int]:
    """(writable memory maps by name, number of finished leading rows).

    Args:
        paths: name -> ``.npy`` file.
        record_path: the JSON record.
        record: JSON-serialisable settings that identify the content.
        specs: name -> (shape, dtype) of each array.

    Raises:
        ValueError: if the record on disk was written for other settings.
    """
    if record_path.exists() and all(p.exists() for p in paths.values()):
        stored = json.loads(record_path.read_text())
        done = stored.pop("done", 0)
        if stored != json.loads(json.dumps(record)):
            files = ", ".join(str(p) for p in (*paths.values(), record_path))
            raise ValueError(
                f"The cache {record_path} was written for other data or settings "
                f"({stored}, expected {record}). Use another cache location, or "
                f"delete {files} to recompute."
            )
        arrays = {n: np.lib.format.open_memmap(p, mode="r+") for n, p in paths.items()}
        return arrays, int(done)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        name: np.lib.format.open_memmap(
            path, mode="w+", dtype=np.dtype(specs[name][1]), shape=specs[name][0]
        )
        for name, path in paths.items()
    }
    write_json(record_path, {**record, "done": 0})
    return arrays, 0


def mark_done(
    record_path: pathlib.Path, arrays: Mapping[str, np.memmap], done: int
) -> None:
    """Flush the arrays, then record that their first `done` rows are finished."""
    for array in arrays.values():
        array.flush()
    record = json.loads(record_path.read_text())
    record["done"] = int(done)
    write_json(record_path, record)


def load_arrays(paths: Mapping[str, pathlib.Path]) -> dict[str, np.ndarray]:
    """Read-only memory maps of finished arrays."""
    return {name: np.load(path, mmap_mode="r") for name, path in paths.items()}


def write_json(path: pathlib.Path, content: dict) -> None:
    """Write atomically, so an interruption never leaves a half-written record."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(content))
    os.replace(partial, path)
