"""Transform plans: the tables of one spin-weighted SHT on the device, ready to run.

An `SHTPlan` holds, for one (grid, ell_max, spin, dtype), the latitude tables of
``sht_tables.py`` as device arrays, with the row weights and gather indices of their
layout, and runs the transform with them (``sht_kernels.py``): ``plan.forward(field)``,
``plan.inverse(coeffs)``. `sht_plan` makes plans and caches them in memory
(``caches.py`` clears that cache). For holders of their own device copy (the Keras
layers), `abstract_plan` gives a plan's structure (shapes and dtypes, nothing built)
and `plan_arrays` its arrays on the host, one at a time, without caching them.

A plan is a JAX pytree whose leaves are the tables, so a jitted function that takes the
plan as an argument receives them as inputs: they are never compiled in as constants,
and they are never part of a model's weights (``sphere-maths.md`` section 7). A
transform traced inside a caller's ``jax.jit`` without the plan as an argument fetches
them at run time instead (`runtime_inputs`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import numpy as np

from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.sht_kernels import _forward_jit
from keras_sphere.sphere.sht_kernels import _inverse_jit
from keras_sphere.sphere.sht_tables import _forward_gather_index
from keras_sphere.sphere.sht_tables import _inverse_gather_index
from keras_sphere.sphere.sht_tables import _Layout
from keras_sphere.sphere.sht_tables import _layout
from keras_sphere.sphere.sht_tables import _table_shapes
from keras_sphere.sphere.sht_tables import iter_tables

__all__ = [
    "SHTPlan",
    "abstract_plan",
    "plan_arrays",
    "runtime_inputs",
    "sht_plan",
    "to_device",
]


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
        return _forward_jit(self, field, fast_vjp)

    def inverse(self, coeffs, *, is_real: bool = False, fast_vjp: bool = False):
        """Inverse transform; see `keras_sphere.sphere.isht`.

        Args:
            coeffs: (..., L + 1, 2L + 1) coefficients.
            is_real: synthesise a real spin-0 field.
            fast_vjp: as in `forward` (complex output only).
        """
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
        cached (see `clear_cache`). Memory: about (ell_max + 1)^2 n_lat / 4 values of
        `dtype` for spin 0, twice that for other spins (2.1 GiB for a 2048 x 2048 grid
        at L = 1023 in float32), twice again on latitude-limited grids.

    Raises:
        ValueError: if ell_max exceeds the grid's limit or |spin| > ell_max.
    """
    return _plan(*_checked(grid, ell_max, spin, dtype))


def abstract_plan(
    grid: Grid, ell_max: int | None = None, spin: int = 0, dtype: str = "float32"
) -> SHTPlan:
    """The structure of a plan: its leaves are `jax.ShapeDtypeStruct`, nothing built.

    Same arguments and errors as `sht_plan`. With `plan_arrays` it lets a holder of
    its own copy of the tables (a Keras layer's state) declare them first and fill
    them later: ``jax.tree_util.tree_unflatten(treedef, arrays)``, with the treedef
    of this plan, gives a working plan.
    """
    return _abstract_plan(*_checked(grid, ell_max, spin, dtype))


def _abstract_plan(grid: Grid, ell_max: int, spin: int, dtype: str) -> SHTPlan:
    layout = _layout(grid.n_lat, ell_max, spin)
    tables = tuple(
        jax.ShapeDtypeStruct(shape, dtype) for shape in _table_shapes(layout)
    )
    n_stored = sum(w * k for w, k, _ in _table_shapes(layout))
    arrays = (
        tables,
        tables if _has_exact_analysis(grid, ell_max) else (),
        jax.ShapeDtypeStruct((grid.n_lat,), dtype),
        jax.ShapeDtypeStruct((ell_max + 1, ell_max + 1), np.int32),
        jax.ShapeDtypeStruct((n_stored,), np.int32),
    )
    return SHTPlan(grid, ell_max, spin, dtype, arrays)


def plan_arrays(
    grid: Grid, ell_max: int | None = None, spin: int = 0, dtype: str = "float32"
) -> Iterator[np.ndarray]:
    """The arrays of a plan on the host, one at a time, in the order of its leaves.

    Same arguments and errors as `sht_plan`. Nothing is cached in memory: large
    tables come from (or go to) the disk cache, and only the array being handed out
    is held, so a caller that moves each to the device before asking for the next
    needs the tables once, not twice.

    Yields:
        NumPy arrays with the shapes and dtypes of the leaves of `abstract_plan`.
    """
    yield from _host_arrays(*_checked(grid, ell_max, spin, dtype))


def _checked(grid, ell_max, spin, dtype) -> tuple[Grid, int, int, str]:
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
    return grid, ell_max, spin, dtype


def _has_exact_analysis(grid: Grid, ell_max: int) -> bool:
    return 2 * ell_max + 1 > grid.n_lat


def _host_arrays(grid: Grid, ell_max: int, spin: int, dtype: str):
    """The plan's arrays in the order of its flattened leaves.

    Synthesis tables, exact analysis tables (latitude-limited grids only), row
    weights, forward gather index, inverse gather index.
    """
    layout = _layout(grid.n_lat, ell_max, spin)
    exact = _has_exact_analysis(grid, ell_max)
    yield from iter_tables(layout, False, dtype)
    if exact:
        yield from iter_tables(layout, True, dtype)
    if exact:
        row_weights = np.full(grid.n_lat, 2 * np.pi / grid.n_lon)
    else:
        row_weights = np.array(grid.weights)
    if layout.uses_parity and grid.n_lat % 2 == 1:
        # The equator row is its own mirror: count it once in the north + south sum.
        row_weights[grid.n_lat // 2] *= 0.5
    yield row_weights.astype(dtype)
    yield _forward_gather_index(layout).astype(np.int32)
    yield _inverse_gather_index(layout).astype(np.int32)


def to_device(array: np.ndarray) -> jax.Array:
    """Copy one host array to the default device and wait for the copy.

    `jax.device_put` compiles nothing (``jnp.asarray`` compiled a conversion per
    shape, 0.1 s each) and, since the copy is awaited, the host array can be freed
    before the next one is made. Concrete even inside a trace.
    """
    with jax.ensure_compile_time_eval():
        return jax.block_until_ready(jax.device_put(array))


@functools.lru_cache(maxsize=32)
def _plan(grid: Grid, ell_max: int, spin: int, dtype: str) -> SHTPlan:
    treedef = jax.tree_util.tree_structure(_abstract_plan(grid, ell_max, spin, dtype))
    leaves = [to_device(a) for a in _host_arrays(grid, ell_max, spin, dtype)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


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
