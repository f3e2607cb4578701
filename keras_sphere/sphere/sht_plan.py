"""Transform plans: the precomputed tables of the spin-weighted SHT and their layout.

A plan holds, for one (grid, ell_max, spin, dtype), the latitude tables of
``sht.py``'s two-stage transform (longitude FFT, then one real matmul per order m):

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

Tables are built in float64 on the host, cast to the compute dtype, cached in memory per
(n_lat, ell_max, spin, dtype) and, for large ones, on disk (``$KERAS_SPHERE_CACHE``,
default ``~/.cache/keras_sphere``; set it to ``off`` to disable). A plan is a JAX pytree
whose leaves are the tables, so a jitted function that takes the plan as an argument
receives them as inputs: they are never compiled in as constants, and they are never
part of a model's weights.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib
import threading

import jax
import numpy as np

from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.quadrature import clenshaw_curtis_weights
from keras_sphere.sphere.wigner import spin_harmonics

__all__ = ["SHTPlan", "clear_cache", "runtime_inputs", "sht_plan"]

_TABLE_FORMAT_VERSION = 1
# Orders per chunk when evaluating harmonics, to bound float64 scratch memory.
_M_CHUNK = 16
# Tables at least this large (bytes, float64) are cached on disk.
_DISK_CACHE_MIN_BYTES = 32 * 2**20


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


def _build_tables(layout: _Layout, exact: bool) -> list[np.ndarray]:
    """float64 tables, one per (block, group), each shape (width, n_k, n_rows)."""
    tables = []
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
        tables.extend(block)
    return tables


def _cache_dir() -> pathlib.Path | None:
    setting = os.environ.get("KERAS_SPHERE_CACHE", "")
    if setting.lower() in ("off", "0", "none", "false"):
        return None
    if setting:
        return pathlib.Path(setting)
    return pathlib.Path.home() / ".cache" / "keras_sphere"


def _cached_tables(layout: _Layout, exact: bool, dtype: np.dtype) -> list[np.ndarray]:
    """Tables in `dtype`, from the disk cache when they are large enough for it."""
    n_bytes = 8 * sum(
        (m1 - m0) * sum(n_k) * layout.n_rows
        for (m0, m1), n_k in zip(layout.blocks, layout.n_k, strict=True)
    )
    directory = _cache_dir() if n_bytes >= _DISK_CACHE_MIN_BYTES else None
    path = None
    if directory is not None:
        key = repr((_TABLE_FORMAT_VERSION, layout, exact, np.dtype(dtype).str))
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        path = directory / f"sht_tables_{digest}.npz"
        if path.exists():
            try:
                with np.load(path) as stored:
                    return [stored[f"t{i}"] for i in range(len(stored.files))]
            except (OSError, ValueError, KeyError):
                pass  # corrupted cache entry: rebuild and overwrite it
    tables = [t.astype(dtype) for t in _build_tables(layout, exact)]
    if path is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            with open(partial, "wb") as handle:
                np.savez(handle, **{f"t{i}": t for i, t in enumerate(tables)})
            os.replace(partial, path)
        except OSError:
            pass  # a read-only cache directory only costs a rebuild next time
    return tables


@jax.tree_util.register_pytree_node_class
class SHTPlan:
    """Precomputed tables of the spin-weighted SHT for one (grid, ell_max, spin, dtype).

    Make one with ``sht_plan``. Pass it as an argument of jitted functions (it is a JAX
    pytree) so that its tables enter compiled programs as inputs, not constants:

    >>> import jax
    >>> from keras_sphere.sphere import Grid, sht_plan
    >>> plan = sht_plan(Grid.for_bandlimit(7), spin=0)
    >>> step = jax.jit(lambda plan, field: plan.inverse(plan.forward(field)))
    >>> step(plan, jax.numpy.ones((2, 16, 16))).shape
    (2, 16, 16)

    Attributes:
        grid: the `Grid`.
        ell_max: inclusive maximum degree.
        spin: spin weight.
        dtype: real dtype of the tables ("float32" or "float64").
    """

    def __init__(self, grid, ell_max, spin, dtype, arrays):
        self.grid = grid
        self.ell_max = ell_max
        self.spin = spin
        self.dtype = dtype
        # arrays: (synthesis tables, analysis tables or (), row weights,
        #          forward gather index, inverse gather index)
        self.arrays = arrays

    @property
    def layout(self) -> _Layout:
        return _layout(self.grid.n_lat, self.ell_max, self.spin)

    @property
    def has_exact_analysis_table(self) -> bool:
        return len(self.arrays[1]) > 0

    def tree_flatten(self):
        return (self.arrays,), (self.grid, self.ell_max, self.spin, self.dtype)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*aux, children[0])

    def forward(self, field, *, fast_vjp: bool = False):
        """Forward transform; see `keras_sphere.sphere.sht`.

        Args:
            field: (..., n_lat, n_lon) field sampled on the plan's grid.
            fast_vjp: differentiate complex fields in reverse mode with the
                hand-written transposed transform instead of JAX's transposes of
                each step (measured faster in training, used by the layers).
                Forward-mode derivatives (``jax.jvp``) are then unavailable.
        """
        from keras_sphere.sphere.sht import _forward_jit

        return _forward_jit(self, field, fast_vjp)

    def inverse(self, coeffs, *, is_real: bool = False, fast_vjp: bool = False):
        """Inverse transform; see `keras_sphere.sphere.isht`.

        Args:
            coeffs: (..., L + 1, 2L + 1) coefficients.
            is_real: synthesise a real spin-0 field.
            fast_vjp: as in `forward` (complex output only).
        """
        from keras_sphere.sphere.sht import _inverse_jit

        return _inverse_jit(self, coeffs, is_real, fast_vjp)

    def __repr__(self):
        return (
            f"SHTPlan(grid={self.grid}, ell_max={self.ell_max}, spin={self.spin}, "
            f"dtype={self.dtype})"
        )


def sht_plan(
    grid: Grid, ell_max: int | None = None, spin: int = 0, dtype: str = "float32"
) -> SHTPlan:
    """The (cached) transform plan for a grid, bandlimit, spin and dtype.

    Args:
        grid: the `Grid` fields are sampled on.
        ell_max: inclusive maximum degree; default `grid.max_bandlimit`.
        spin: spin weight, |spin| <= ell_max.
        dtype: "float32" (default) or "float64" (needs ``jax_enable_x64``).

    Returns:
        An `SHTPlan`. Building tables costs O(ell_max^2 n_lat) in float64; plans are
        cached (see `clear_cache`).

    Raises:
        ValueError: if ell_max exceeds the grid's limit or |spin| > ell_max.
    """
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a keras_sphere.sphere.Grid. Received: {grid!r}")
    ell_max = grid.max_bandlimit if ell_max is None else int(ell_max)
    grid.check_bandlimit(ell_max)
    spin = int(spin)
    if abs(spin) > ell_max:
        raise ValueError(
            f"|spin| must be <= lmax: a spin-{spin} field has no coefficients "
            f"below degree {abs(spin)}. Received: spin={spin}, lmax={ell_max}"
        )
    dtype = np.dtype(dtype).name
    if dtype not in ("float32", "float64"):
        raise ValueError(
            f"dtype must be 'float32' or 'float64'. Received: dtype={dtype}"
        )
    return _plan(grid, ell_max, spin, dtype)


@functools.lru_cache(maxsize=32)
def _plan(grid: Grid, ell_max: int, spin: int, dtype: str) -> SHTPlan:

    layout = _layout(grid.n_lat, ell_max, spin)
    exact = 2 * ell_max + 1 > grid.n_lat
    synthesis = _cached_tables(layout, False, np.dtype(dtype))
    analysis = _cached_tables(layout, True, np.dtype(dtype)) if exact else []
    if exact:
        row_weights = np.full(grid.n_lat, 2 * np.pi / grid.n_lon)
    else:
        row_weights = np.array(grid.weights)
    if layout.uses_parity and grid.n_lat % 2 == 1:
        # The equator row is its own mirror: count it once in the north + south sum.
        row_weights[grid.n_lat // 2] *= 0.5
    with jax.ensure_compile_time_eval():  # concrete arrays even inside a trace
        arrays = _device_arrays(synthesis, analysis, row_weights, layout, dtype)
    return SHTPlan(grid, ell_max, spin, dtype, arrays)


def _device_arrays(synthesis, analysis, row_weights, layout, dtype):
    import jax.numpy as jnp

    int_dtype = jnp.int32
    return (
        tuple(jnp.asarray(t) for t in synthesis),
        tuple(jnp.asarray(t) for t in analysis),
        jnp.asarray(row_weights.astype(dtype)),
        jnp.asarray(_forward_gather_index(layout), int_dtype),
        jnp.asarray(_inverse_gather_index(layout), int_dtype),
    )


def runtime_inputs(tree):
    """Return `tree` with its arrays fetched by a host callback at run time.

    Used when a transform is traced inside a caller's ``jax.jit`` without the plan being
    an argument: closing over the tables would compile them in as constants (slow to
    compile, duplicated per program), so they are copied in when the program runs
    instead. The callback has no inputs, so it never needs a derivative.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    host = [np.asarray(leaf) for leaf in leaves]
    shapes = [jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in leaves]
    fetched = jax.pure_callback(lambda: host, shapes, vmap_method="broadcast_all")
    return jax.tree_util.tree_unflatten(treedef, fetched)


def clear_cache() -> None:
    """Drop the in-memory plans and tables (tables cached on disk stay)."""
    _plan.cache_clear()
    from keras_sphere.sphere.rotation import _delta_tables

    _delta_tables.cache_clear()
