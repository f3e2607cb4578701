"""The latitude tables of the spin-weighted SHT: their values, layout and disk cache.

The two-stage transform (``sht_kernels.py``: a longitude FFT, then one real matmul per
order m) contracts grid rows with these tables, for one (n_lat, ell_max, spin):

* synthesis table Y^s[ell, m, j] = sY_ell,m(theta_j, 0) (``wigner.py``);
* analysis: the same table with the row weights q_j applied to the input rows when plain
  quadrature is exact (2 ell_max + 1 <= n_lat), else a dedicated exact table
  P^s[ell, m, j] (below).

Layout, chosen for matmul speed (measured in ``benchmarks/sht.py``):

* only m >= 0 is stored; negative orders use
  Y^s[ell, -m, theta] = (-1)^(ell + s) Y^s[ell, m, pi - theta];
* rows with ell < m are skipped: orders are cut into contiguous blocks and each block
  stores degrees from its smallest m only (a few percent of zeros instead of half);
* spin 0 also uses the north/south mirror symmetry
  Y^0[ell, m, pi - theta] = (-1)^(ell + m) Y^0[ell, m, theta]: only northern rows are
  stored, split by the parity of ell + m, which halves table memory and matmul work.

Exact analysis on latitude-limited grids (n_lat < 2 ell_max + 1). At fixed m each
column, extended over the meridian circle with F(2 pi - theta) = (-1)^(m+s) F(theta), is
sampled at N = 2 (n_lat - 1) equispaced points; its trigonometric interpolant of degree
D = n_lat - 2 (exact for band-limited fields) times sY_ell,m is an even trigonometric
polynomial of degree <= D + ell_max, i.e. a polynomial in cos(theta), which
Clenshaw-Curtis quadrature on n_f = n_lat + ell_max rows integrates exactly.
Interpolation and quadrature are both linear, so they fold into one table
P^s[ell, m, j] of the same size as Y^s and the transform costs the same as on any other
grid.

Tables are built here in float64 on the host, one block of orders at a time, and cast
to the compute dtype block by block, so a build needs the float32 tables plus one
float64 block (not the whole float64 set). `iter_tables` hands them out one at a time,
so that a caller can move each to the device and drop it before the next. Large ones
are cached on disk (``$KERAS_SPHERE_CACHE``, default ``~/.cache/keras_sphere``; set it
to ``off`` to disable; 2.1 GiB for spin 0 on a 2048 x 2048 grid at L = 1023), and
builds or reads that take long show a progress bar on stderr. Putting tables on the
device, and caching them in memory per (grid, ell_max, spin, dtype), is the plan's job
(``sht_plan.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib
import sys
import threading
import time
import zipfile
from collections.abc import Iterator

import numpy as np

from keras_sphere._cache import cache_root
from keras_sphere.sphere.quadrature import clenshaw_curtis_weights
from keras_sphere.sphere.wigner import spin_harmonics

_TABLE_FORMAT_VERSION = 2  # 2: south-pole rows of sizes like n = 14, 27 fixed
# Orders per chunk when evaluating harmonics, to bound float64 scratch memory.
_M_CHUNK = 16
# Tables at least this large (bytes, float64) are cached on disk.
_DISK_CACHE_MIN_BYTES = 32 * 2**20
# Builds and disk reads of tables at least this large (bytes, float64) show progress:
# from about L = 400 on the square grid (L = 511: ~6 s to build, L = 1023: ~35 s on 2
# cores; L = 255: under a second).
_PROGRESS_MIN_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Static description of how a plan's tables are cut and indexed.

    groups: (offset, step) pairs: a group holds degrees ell = m + offset + step * k.
        Spin 0 uses the parity groups ((0, 2), (1, 2)) over northern rows; other spins
        one group (0, 1) over all rows.
    blocks: (m_start, m_stop) order ranges.
    n_k: n_k[b][g], degrees stored for block b and group g.
    """

    ell_max: int
    n_lat: int
    spin: int
    groups: tuple[tuple[int, int], ...]
    blocks: tuple[tuple[int, int], ...]
    n_k: tuple[tuple[int, ...], ...]

    @property
    def uses_parity(self) -> bool:
        return self.spin == 0

    @property
    def n_rows(self) -> int:
        """Rows stored per table: northern half (equator included) or all."""
        return (self.n_lat + 1) // 2 if self.uses_parity else self.n_lat


def _block_width(ell_max: int) -> int:
    # About 16 blocks wastes ~6% of the matmul on zeros; narrower blocks cost
    # dispatches.
    return max(8, -(-(ell_max + 1) // 16))


@functools.lru_cache(maxsize=128)
def _layout(n_lat: int, ell_max: int, spin: int) -> _Layout:
    groups = ((0, 2), (1, 2)) if spin == 0 else ((0, 1),)
    width = _block_width(ell_max)
    blocks = tuple(
        (m0, min(m0 + width, ell_max + 1)) for m0 in range(0, ell_max + 1, width)
    )
    n_k = tuple(
        tuple(max(0, (ell_max - m0 - offset) // step + 1) for offset, step in groups)
        for m0, _ in blocks
    )
    return _Layout(ell_max, n_lat, spin, groups, blocks, n_k)


def _forward_gather_index(layout: _Layout) -> np.ndarray:
    """Index into the concatenated matmul outputs for each (ell, m >= 0).

    Returns int32, shape (ell_max + 1, ell_max + 1) [ell, m]; entries with m > ell point
    at the zero row appended after the last output row.
    """
    size = layout.ell_max + 1
    index = np.full((size, size), -1, np.int64)
    offset_row = 0
    for (m0, m1), n_k in zip(layout.blocks, layout.n_k, strict=True):
        for (offset, step), k_count in zip(layout.groups, n_k, strict=True):
            for i, m in enumerate(range(m0, m1)):
                ells = m + offset + step * np.arange(k_count)
                keep = ells <= layout.ell_max
                index[ells[keep], m] = (
                    offset_row + i * k_count + np.arange(k_count)[keep]
                )
            offset_row += (m1 - m0) * k_count
    index[index < 0] = offset_row  # the zero row
    return index.astype(np.int32)


def _inverse_gather_index(layout: _Layout) -> np.ndarray:
    """Flat index into (ell, m >= 0) coefficients for every stored table row.

    Returns int32, shape (n_stored,): position ell * (ell_max + 1) + m, or
    (ell_max + 1)^2 (a zero row) where ell > ell_max.
    """
    size = layout.ell_max + 1
    parts = []
    for (m0, m1), n_k in zip(layout.blocks, layout.n_k, strict=True):
        for (offset, step), k_count in zip(layout.groups, n_k, strict=True):
            m = np.arange(m0, m1)[:, None]
            ells = m + offset + step * np.arange(k_count)[None, :]
            flat = np.where(ells <= layout.ell_max, ells * size + m, size * size)
            parts.append(flat.reshape(-1))
    return np.concatenate(parts).astype(np.int32)


def _interpolation_matrix(
    n_lat: int, theta_fine: np.ndarray, parity: int
) -> np.ndarray:
    """Trigonometric interpolation of an extended meridian column onto finer rows.

    The column F_j on the n_lat rows is extended to N = 2 (n_lat - 1) points with
    F(2 pi - theta) = (-1)^parity F(theta), and its interpolant of degree n_lat - 2 (the
    Nyquist term dropped) is evaluated at `theta_fine`.

    Returns:
        float64, shape (n_fine, n_lat).
    """
    n_ext = 2 * (n_lat - 1)
    degree = n_lat - 2
    theta = np.pi * np.arange(n_lat) / (n_lat - 1)

    def dirichlet(x):
        # sum_{|q| <= degree} e^{i q x} = 1 + 2 sum_{q=1}^{degree} cos(q x)
        half = np.sin(x / 2)
        safe = np.abs(half) > 1e-12
        value = np.sin((degree + 0.5) * x) / np.where(safe, half, 1.0)
        return np.where(safe, value, 2.0 * degree + 1.0)

    diff = theta_fine[:, None] - theta[None, :]
    mirrored = theta_fine[:, None] + theta[None, :]
    matrix = dirichlet(diff)
    interior = np.ones(n_lat)
    interior[[0, -1]] = 0.0
    sign = -1.0 if parity % 2 else 1.0
    matrix = matrix + sign * interior * dirichlet(mirrored)
    return matrix / n_ext


def _harmonic_rows(
    n_lat: int, ell_max: int, spin: int, orders: np.ndarray, rows: int, exact: bool
) -> np.ndarray:
    """Synthesis (exact=False) or exact analysis (exact=True) values for some orders.

    Returns:
        float64, shape (ell_max + 1, len(orders), rows), for the first `rows` grid rows.
        The analysis values exclude the factor 2 pi / n_lon.
    """
    theta = np.pi * np.arange(n_lat) / (n_lat - 1)
    if not exact:
        return spin_harmonics(ell_max, orders, spin, theta[:rows])
    n_fine = n_lat + ell_max
    theta_fine = np.pi * np.arange(n_fine) / (n_fine - 1)
    weights_fine = clenshaw_curtis_weights(n_fine)
    values = spin_harmonics(ell_max, orders, spin, theta_fine)  # [ell, m, fine]
    out = np.empty((ell_max + 1, len(orders), rows))
    for parity in (0, 1):
        chosen = (orders + spin) % 2 == parity
        if not chosen.any():
            continue
        interp = _interpolation_matrix(n_lat, theta_fine, parity)[:, :rows]
        weighted = values[:, chosen] * weights_fine  # [ell, m, fine]
        # One large GEMM, not a stack of thin ones: [ell * m, fine] x [fine, rows]
        folded = weighted.reshape(-1, n_fine) @ interp
        out[:, chosen] = folded.reshape(ell_max + 1, -1, rows)
    return out


def _table_shapes(layout: _Layout) -> list[tuple[int, int, int]]:
    """Shape (width, n_k, n_rows) of each table, one per (block, group), in order."""
    return [
        (m1 - m0, k, layout.n_rows)
        for (m0, m1), n_k in zip(layout.blocks, layout.n_k, strict=True)
        for k in n_k
    ]


def _float64_bytes(layout: _Layout) -> int:
    return 8 * sum(w * k * rows for w, k, rows in _table_shapes(layout))


def _build_tables(
    layout: _Layout, exact: bool, dtype=np.float64
) -> Iterator[np.ndarray]:
    """The tables in `dtype`, one per (block, group), each (width, n_k, n_rows).

    Computed in float64 block by block and cast as each block is done: the float64
    scratch is one block, not the whole set.
    """
    for (m0, m1), n_k in zip(layout.blocks, layout.n_k, strict=True):
        block = [np.zeros((m1 - m0, k, layout.n_rows)) for k in n_k]
        for c0 in range(m0, m1, _M_CHUNK):
            orders = np.arange(c0, min(c0 + _M_CHUNK, m1))
            values = _harmonic_rows(
                layout.n_lat, layout.ell_max, layout.spin, orders, layout.n_rows, exact
            )  # [ell, m, rows]
            for (offset, step), table in zip(layout.groups, block, strict=True):
                for i, m in enumerate(orders):
                    ells = m + offset + step * np.arange(table.shape[1])
                    keep = ells <= layout.ell_max
                    table[m - m0, keep] = values[ells[keep], i]
        for table in block:
            yield table.astype(dtype, copy=False)


class _Progress:
    """A one-line progress bar on stderr (start and end lines when not a terminal)."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total, self.enabled = label, total, enabled
        self.start = time.perf_counter()
        self.interactive = enabled and _isatty(sys.stderr)
        if enabled and not self.interactive:
            print(f"{label} ...", file=sys.stderr, flush=True)

    def update(self, done: int) -> None:
        if self.interactive:
            print(f"\r{self._line(done)}", end="", file=sys.stderr, flush=True)

    def close(self, note: str = "") -> None:
        if not self.enabled:
            return
        if self.interactive:
            print(f"\r{self._line(self.total)}{note}", file=sys.stderr, flush=True)
        else:
            elapsed = time.perf_counter() - self.start
            print(f"{self.label}: {elapsed:.0f} s{note}", file=sys.stderr, flush=True)

    def _line(self, done: int) -> str:
        width = 30
        filled = width * done // max(self.total, 1)
        bar = "=" * filled + "." * (width - filled)
        elapsed = time.perf_counter() - self.start
        return f"{self.label} [{bar}] {done}/{self.total} {elapsed:.0f} s"


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _cache_path(layout: _Layout, exact: bool, dtype) -> pathlib.Path | None:
    """Where tables this large are cached on disk, or None (small, or cache off)."""
    directory = (
        cache_root() if _float64_bytes(layout) >= _DISK_CACHE_MIN_BYTES else None
    )
    if directory is None:
        return None
    key = repr((_TABLE_FORMAT_VERSION, layout, exact, np.dtype(dtype).str))
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return directory / f"sht_tables_{digest}.npz"


def iter_tables(layout: _Layout, exact: bool, dtype) -> Iterator[np.ndarray]:
    """The tables of `layout` in `dtype`, one at a time, in the plan's order.

    Read from the disk cache when they are large enough for it, else built (and then
    written to the cache, table by table). Holding only the current table lets a
    caller move each to the device before the next one exists.

    Args:
        layout: the `_Layout` of the plan.
        exact: the exact analysis tables (latitude-limited grids) instead of the
            synthesis tables.
        dtype: NumPy dtype of the tables (float32 or float64).

    Yields:
        `dtype` arrays of the shapes `_table_shapes(layout)`.
    """
    dtype = np.dtype(dtype)
    count = len(_table_shapes(layout))
    path = _cache_path(layout, exact, dtype)
    size = _float64_bytes(layout) * dtype.itemsize // 8
    kind = "exact analysis" if exact else "SHT"
    label = (
        f"{kind} tables for {layout.n_lat} rows, L = {layout.ell_max}, spin "
        f"{layout.spin} ({size / 2**20:,.0f} MiB)"
    )
    enabled = _float64_bytes(layout) >= _PROGRESS_MIN_BYTES
    done = 0
    if path is not None and path.exists():
        progress = _Progress(f"Reading {label}", count, enabled)
        try:
            with np.load(path) as stored:
                if len(stored.files) != count:
                    raise ValueError(f"{path} holds {len(stored.files)} tables")
                for index in range(count):
                    table = stored[f"t{index}"]
                    progress.update(index + 1)
                    yield table
                    done += 1
            progress.close()
            return
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            progress.close(" (unreadable: rebuilding)")  # rebuild and overwrite it
    progress = _Progress(f"Building {label}", count, enabled)
    writer = _CacheWriter(path) if path is not None else None
    try:
        for index, table in enumerate(_build_tables(layout, exact, dtype)):
            if writer is not None:
                writer.add(f"t{index}", table)
            progress.update(index + 1)
            if index >= done:  # tables a broken cache file gave are not repeated
                yield table
        if writer is not None:
            writer.commit()
        cached = writer is not None and writer.committed
        progress.close(f", cached in {path.parent}" if cached else "")
    finally:
        if writer is not None:
            writer.discard()


class _CacheWriter:
    """Writes tables one at a time into an ``.npz`` file, renamed into place at the end.

    The same file format as ``np.savez`` (one ``.npy`` entry per table in an
    uncompressed zip), without holding every table at once. A read-only or full
    cache directory only costs a rebuild next time.
    """

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        self.committed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.archive = zipfile.ZipFile(self.partial, "w", allowZip64=True)
        except OSError:
            self.archive = None

    def add(self, name: str, table: np.ndarray) -> None:
        if self.archive is None:
            return
        try:
            with self.archive.open(f"{name}.npy", "w", force_zip64=True) as stream:
                np.lib.format.write_array(stream, table, allow_pickle=False)
        except OSError:
            self.discard()

    def commit(self) -> None:
        if self.archive is None:
            return
        try:
            self.archive.close()
            self.archive = None
            os.replace(self.partial, self.path)
            self.committed = True
        except OSError:
            self.discard()

    def discard(self) -> None:
        """Drop an unfinished file (an error, or a reader that stopped early)."""
        if self.archive is not None:
            try:
                self.archive.close()
            except OSError:
                pass
            self.archive = None
        if not self.committed:
            try:
                self.partial.unlink()
            except OSError:
                pass
