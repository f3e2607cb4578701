"""Transform plans: the tables of one spin-weighted SHT on the device, ready to run.

An `SHTPlan` holds, for one (grid, ell_max, spin, dtype), the latitude tables of
``sht_tables.py`` as device arrays, with the row weights and gather indices of their
layout, and runs the transform with them (``sht_kernels.py``): ``plan.forward(field)``,
``plan.inverse(coeffs)``. `sht_plan` makes plans and caches them in memory
(``caches.py`` clears that cache).

A plan is a JAX pytree whose leaves are the tables, so a jitted function that takes the
plan as an argument receives them as inputs: they are never compiled in as constants,
and they are never part of a model's weights (``sphere-maths.md`` section 7). A
transform traced inside a caller's ``jax.jit`` without the plan as an argument fetches
them at run time instead (`runtime_inputs`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.sht_kernels import _forward_jit
from keras_sphere.sphere.sht_kernels import _inverse_jit
from keras_sphere.sphere.sht_tables import _cached_tables
from keras_sphere.sphere.sht_tables import _forward_gather_index
from keras_sphere.sphere.sht_tables import _inverse_gather_index
from keras_sphere.sphere.sht_tables import _Layout
from keras_sphere.sphere.sht_tables import _layout

__all__ = ["SHTPlan", "runtime_inputs", "sht_plan"]


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
