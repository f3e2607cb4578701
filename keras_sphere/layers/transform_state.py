"""Transform tables inside Keras layers: state that is threaded, not saved, not counted.

A layer that transforms between the spatial layout (batch, n_lat, n_lon, spins,
channels) and the spectral layout (batch, L + 1, 2L + 1, spins, channels) needs the
tables of an `SHTPlan` per spin. They must reach the compiled training step as inputs
(closing over them would compile them in as constants, ``sphere-maths.md`` section 7),
but they are not weights: they are rebuilt from the configuration on load, never written
to weight files, and never part of ``count_params()``.

Keras threads through ``fit`` every variable listed in ``layer.variables``; that list
extends ``layer.weights`` with the state of random seed generators, which Keras neither
saves nor counts. `TransformState` holds each table as a non-trainable variable
registered the same way (an object with a ``state`` variable in the layer's seed-
generator list), so the tables enter jitted steps as arguments, follow
``keras.distribution`` layouts, and stay out of ``.keras`` files, ``save_weights`` and
parameter counts.

Tables are made when first needed, and once per process. ``build`` only declares
them (shapes from `abstract_plan`, no values): building or loading a model costs
no table memory and no table time, and a model whose transforms never run (a
scattering front end replaced by cached features) never makes them. The first
eager call, ``fit``, ``predict`` or ``evaluate`` reads the variables and fills them
(`plan_arrays`: built, or read from the disk cache, with a progress bar where that
takes long). Layers that need the same tables (same grid, bandlimit and spin, under
the same distribution) share the same variables, so a model holds each table once,
however many layers use it, and so do several models in one process. Keras donates
its state to compiled steps (the input buffers are reused for the outputs and the
inputs deleted), so these variables are the only device copy: they are filled from
host arrays, never from the device arrays of `sht_plan`'s cache, which a donation
would delete.

Two ways to transform: the FFT + Legendre `SHTPlan` (any size), or for small grids
and bandlimits one dense complex matrix product per spin (``sphere/dense.py``), which
is 2-8x faster inside CNNs (hundreds of thousands of small maps per layer, channels
last). ``method="auto"`` picks dense up to ``DENSE_MAX_SIZE``.
"""

from __future__ import annotations

import weakref

import jax
import keras
import numpy as np

from keras_sphere.layers.batch_chunks import in_chunks
from keras_sphere.layers.degree_packing import pack_degrees
from keras_sphere.layers.degree_packing import unpack_degrees
from keras_sphere.layers.lazy_variables import LazyVariable
from keras_sphere.sphere import Grid
from keras_sphere.sphere import SHTPlan
from keras_sphere.sphere.dense import sht_matrices
from keras_sphere.sphere.sht_plan import abstract_plan
from keras_sphere.sphere.sht_plan import plan_arrays
from keras_sphere.sphere.sht_plan import to_device

__all__ = ["DENSE_MAX_SIZE", "TransformState"]

# Dense transforms while n_lat * n_lon * (L + 1)^2 is at most this: 16 x 16 at L = 7
# (4x the dense work still wins at 32 x 32 -> L = 7), 8 x 8 at L = 3; 32 x 32 at
# L = 15 and larger use the plan. Measured on the QM9 layers of
# `benchmarks/train_step.py`: dense 2-8x faster below, slower above.
DENSE_MAX_SIZE = 2**16
_METHODS = ("auto", "plan", "dense")


class _Table(LazyVariable):
    """A transform table: a non-trainable, unsaved `LazyVariable`.

    Its first read fills every table of its `_SharedTables`.
    """

    def __init__(self, tables: _SharedTables, shape, dtype, name: str):
        self._tables = tables
        super().__init__(
            initializer="zeros",
            shape=shape,
            dtype=dtype,
            trainable=False,
            autocast=False,
            name=name,
        )

    def make_value(self) -> None:
        self._tables.fill()


class _TableHolder:
    """Looks like a SeedGenerator to Keras: one non-trainable `state` variable."""

    def __init__(self, state: _Table):
        self.state = state


class _SharedTables:
    """The tables of one plan or one set of dense matrices, shared by every layer.

    Args:
        key: what the tables are: ("plan", grid, ell_max, spin) or ("dense", grid,
            ell_max, spins).
        names: a variable name per table.
        structure: a `jax.ShapeDtypeStruct` per table, in the order of `arrays`.
        arrays: a function returning an iterator over the host arrays, in order.
        treedef: for plans, how the tables make an `SHTPlan`.
    """

    def __init__(self, key, names, structure, arrays, treedef=None):
        self.key = key
        self.treedef = treedef
        self.distribution = keras.distribution.distribution()  # lays out the tables
        self._arrays = arrays
        self.holders = [
            _TableHolder(_Table(self, leaf.shape, leaf.dtype, name))
            for name, leaf in zip(names, structure, strict=True)
        ]

    @property
    def values(self) -> list:
        return [holder.state.value for holder in self.holders]

    def fill(self) -> None:
        """Make every table that has no value, one host array at a time."""
        # The first read may come inside a traced function (jit, scan, shard_map):
        # the tables are made there as concrete arrays, never as that trace's values.
        with jax.ensure_compile_time_eval():
            # strict: the iterator runs to its end, which finishes a disk-cache write.
            for holder, array in zip(self.holders, self._arrays(), strict=True):
                table = holder.state
                if not table.has_value:
                    table._direct_assign(to_device(array))
                del array


# Tables in use, by what they are and the distribution they were declared under
# (its layout places them on devices). Weak: tables live as long as a layer holds
# them.
_SHARED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _shared(key: tuple, make) -> _SharedTables:
    """The `_SharedTables` for `key` under the current distribution, made if needed."""
    distribution = keras.distribution.distribution()
    full_key = (*key, id(distribution))
    found = _SHARED.get(full_key)
    if found is None or found.distribution is not distribution:  # ids are reused
        found = make()
        _SHARED[full_key] = found
    return found


def _plan_tables(grid: Grid, ell_max: int, spin: int) -> _SharedTables:
    def make():
        leaves, treedef = jax.tree_util.tree_flatten(
            abstract_plan(grid, ell_max, spin, "float32")
        )
        prefix = f"sht_table_{grid.n_lat}x{grid.n_lon}_L{ell_max}_spin{spin}"
        return _SharedTables(
            ("plan", grid, ell_max, spin),
            [f"{prefix}_{i}" for i in range(len(leaves))],
            leaves,
            lambda: plan_arrays(grid, ell_max, spin, "float32"),
            treedef,
        )

    return _shared(("plan", grid, ell_max, spin), make)


_DENSE_KEYS = ("forward_real", "forward_imag", "inverse_real", "inverse_imag")


def _dense_tables(grid: Grid, ell_max: int, spins: tuple[int, ...]) -> _SharedTables:
    """Per-spin dense matrices as four float32 tables (real / imaginary parts)."""

    def arrays():
        matrices = [sht_matrices(grid, ell_max, s) for s in spins]
        forward = np.stack([f for f, _ in matrices])  # [s, p, q]
        inverse = np.stack([g for _, g in matrices])  # [s, q, p]
        del matrices
        for value in (forward.real, forward.imag, inverse.real, inverse.imag):
            yield value.astype(np.float32)

    def make():
        packed, samples = (ell_max + 1) ** 2, grid.n_lat * grid.n_lon
        forward, inverse = (len(spins), packed, samples), (len(spins), samples, packed)
        shapes = [forward, forward, inverse, inverse]
        spin_names = "_".join(f"m{-s}" if s < 0 else str(s) for s in spins)
        prefix = (
            f"dense_sht_table_{grid.n_lat}x{grid.n_lon}_L{ell_max}_spins{spin_names}"
        )
        return _SharedTables(
            ("dense", grid, ell_max, spins),
            [f"{prefix}_{key}" for key in _DENSE_KEYS],
            [jax.ShapeDtypeStruct(shape, np.float32) for shape in shapes],
            arrays,
        )

    return _shared(("dense", grid, ell_max, spins), make)


class TransformState:
    """The SHT tables one layer needs, registered as non-saved layer state.

    Tables are declared here and made at their first use, shared with every other
    layer that needs the same ones (see the module docstring).

    Args:
        layer: the owning Keras layer (call from its ``build``).
        grid: the spatial `Grid`.
        ell_max: inclusive maximum degree of the spectral side.
        spins: spin weights needed.
        name: what the tables are for in `layer` (e.g. "forward"); shared tables
            are named after what they hold instead.
        method: "plan" (FFT + Legendre tables, any size; `plan` needs it), "dense"
            (matrices, for small sizes) or "auto" (dense up to `DENSE_MAX_SIZE`).
    """

    def __init__(
        self, layer, grid: Grid, ell_max: int, spins, name: str, method: str = "auto"
    ):
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}. Received: {method!r}")
        self.grid = grid
        self.ell_max = int(ell_max)
        self.spins = tuple(int(s) for s in spins)
        self.name = name
        if method == "auto":
            size = grid.n_lat * grid.n_lon * (self.ell_max + 1) ** 2
            method = "dense" if size <= DENSE_MAX_SIZE else "plan"
        self.method = method
        self._spin_order = sorted(set(self.spins))
        if method == "dense":
            self._dense = _dense_tables(grid, self.ell_max, tuple(self._spin_order))
            shared = [self._dense]
        else:
            self._plans = {
                spin: _plan_tables(grid, self.ell_max, spin)
                for spin in self._spin_order
            }
            shared = list(self._plans.values())
        # Each variable once per layer: Keras lists a layer's seed-generator state
        # without removing repeats (a model's list has none).
        present = {id(holder) for holder in layer._seed_generators}
        for tables in shared:
            for holder in tables.holders:
                if id(holder) not in present:
                    layer._seed_generators.append(holder)
                    present.add(id(holder))

    def _dense_tables(self, direction: str, spins):
        """(real, imag) float32 tables of `direction`, one slice per entry of spins."""
        import jax.numpy as jnp

        order = [self._spin_order.index(int(s)) for s in spins]
        values = dict(zip(_DENSE_KEYS, self._dense.values, strict=True))
        parts = []
        for part in ("real", "imag"):
            table = values[f"{direction}_{part}"]
            if order != list(range(table.shape[0])):
                table = jnp.take(table, jnp.asarray(order), axis=0)
            parts.append(table)
        return parts

    def plan(self, spin: int) -> SHTPlan:
        """The plan for `spin`, its tables read from the layer state (traced in fit)."""
        if self.method != "plan":
            raise ValueError(
                "This TransformState holds dense matrices; build it with "
                'method="plan" to get SHTPlans.'
            )
        tables = self._plans[spin]
        return jax.tree_util.tree_unflatten(tables.treedef, tables.values)

    @jax.named_scope("to_spectral")  # names the transform in profiles
    def to_spectral(self, field, spins, packed: bool = False):
        """Forward SHT of every spin slice.

        Args:
            field: (batch, n_lat, n_lon, n_spins, channels), float (spin 0 only) or
                complex; cast to float32 / complex64 first (FFTs need 32-bit input).
            spins: spin of each entry of the spin axis.
            packed: return the packed layout of `pack_degrees` (the dense
                matrices produce it directly).

        Returns:
            complex64, (batch, ell_max + 1, 2 ell_max + 1, n_spins, channels), or
            packed (batch, (ell_max + 1)^2, n_spins, channels).
        """
        import jax.numpy as jnp

        if jnp.issubdtype(field.dtype, jnp.complexfloating):
            field = field.astype(jnp.complex64)
        else:
            field = field.astype(jnp.float32)
        if self.method == "dense":
            coeffs = self._dense_forward(field, spins)  # packed
            return coeffs if packed else unpack_degrees(coeffs, self.ell_max)
        coeffs = in_chunks(lambda part: self._plan_forward(part, spins), field)
        return pack_degrees(coeffs, self.ell_max) if packed else coeffs

    @jax.named_scope("to_spatial")
    def to_spatial(self, coeffs, spins, is_real: bool = False):
        """Inverse SHT of every spin slice.

        Args:
            coeffs: complex, (batch, ell_max + 1, 2 ell_max + 1, n_spins, channels).
            spins: spin of each entry of the spin axis.
            is_real: all spins are 0 and the fields are real: return float32.

        Returns:
            (batch, n_lat, n_lon, n_spins, channels), complex64 (float32 if `is_real`).
        """
        import jax.numpy as jnp

        coeffs = coeffs.astype(jnp.complex64)
        if self.method == "dense":
            return self._dense_inverse(coeffs, spins, is_real)
        return in_chunks(lambda part: self._plan_inverse(part, spins, is_real), coeffs)

    def _plan_forward(self, field, spins):
        import jax.numpy as jnp

        slices = []
        for index, spin in enumerate(spins):
            part = jnp.moveaxis(field[..., index, :], -1, 1)  # [B, C, lat, lon]
            # [B, C, ell, m]
            slices.append(self.plan(spin).forward(part, fast_vjp=True))
        coeffs = jnp.stack(slices, axis=2)  # [B, C, S, ell, m]
        return jnp.transpose(coeffs, (0, 3, 4, 2, 1))

    def _plan_inverse(self, coeffs, spins, is_real):
        import jax.numpy as jnp

        slices = []
        for index, spin in enumerate(spins):
            part = jnp.moveaxis(coeffs[..., index, :], -1, 1)  # [B, C, ell, m]
            plan = self.plan(spin)
            slices.append(plan.inverse(part, is_real=is_real, fast_vjp=True))
        field = jnp.stack(slices, axis=2)  # [B, C, S, lat, lon]
        return jnp.transpose(field, (0, 3, 4, 2, 1))

    def _dense_forward(self, field, spins):
        """Packed coefficients (batch, (L + 1)^2, n_spins, channels)."""
        import jax
        import jax.numpy as jnp

        batch, n_lat, n_lon, n_spins, channels = field.shape
        samples = field.reshape(batch, n_lat * n_lon, n_spins, channels)
        real, imag = self._dense_tables("forward", spins)

        def apply(table, data):
            # [s, p, q] x [b, q, s, c] -> [b, p, s, c]: channels stay the free axis.
            return jnp.einsum("spq,bqsc->bpsc", table, data, precision="highest")

        if jnp.iscomplexobj(samples):
            return apply(jax.lax.complex(real, imag), samples)
        # Real spin-0 input: one real product with the real and imaginary tables
        # stacked, so the samples are read (and laid out for the GEMM) once.
        n_packed = real.shape[1]
        both = apply(jnp.concatenate([real, imag], axis=1), samples)  # [b, 2P, s, c]
        return jax.lax.complex(both[:, :n_packed], both[:, n_packed:])

    def _dense_inverse(self, coeffs, spins, is_real):
        import jax
        import jax.numpy as jnp

        packed = pack_degrees(coeffs, self.ell_max)  # [b, p, s, c]
        real, imag = self._dense_tables("inverse", spins)

        def apply(table, data):
            # [s, q, p] x [b, p, s, c] -> [b, q, s, c]
            return jnp.einsum("sqp,bpsc->bqsc", table, data, precision="highest")

        if is_real:  # Re(G a) = Re G Re a - Im G Im a
            field = apply(real, packed.real) - apply(imag, packed.imag)
        else:
            field = apply(jax.lax.complex(real, imag), packed)
        return field.reshape(
            coeffs.shape[0], self.grid.n_lat, self.grid.n_lon, *coeffs.shape[3:]
        )
