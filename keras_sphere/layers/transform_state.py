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
"""

from __future__ import annotations

import jax
import keras
import numpy as np

from keras_sphere.sphere import Grid
from keras_sphere.sphere import SHTPlan
from keras_sphere.sphere import sht_plan

__all__ = ["TransformState"]


class _TableHolder:
    """Looks like a SeedGenerator to Keras: one non-trainable `state` variable."""

    def __init__(self, value: np.ndarray, name: str):
        # A callable initializer lets Keras defer creation inside stateless scopes
        # (the automatic build of subclassed models) instead of failing there.
        self.state = keras.Variable(
            initializer=lambda shape, dtype: value,
            shape=value.shape,
            dtype=str(value.dtype),
            trainable=False,
            autocast=False,
            name=name,
        )


class TransformState:
    """The SHT tables one layer needs, registered as non-saved layer state.

    Args:
        layer: the owning Keras layer (call from its ``build``).
        grid: the spatial `Grid`.
        ell_max: inclusive maximum degree of the spectral side.
        spins: spin weights needed.
        name: prefix for the variable names.
    """

    def __init__(self, layer, grid: Grid, ell_max: int, spins, name: str):
        self.grid = grid
        self.ell_max = int(ell_max)
        self.spins = tuple(int(s) for s in spins)
        self._treedefs = {}
        self._holders = {}
        for spin in sorted(set(self.spins)):
            plan = sht_plan(grid, self.ell_max, spin, "float32")
            leaves, treedef = jax.tree_util.tree_flatten(plan)
            holders = [
                _TableHolder(np.asarray(leaf), f"{name}_spin{spin}_table{i}")
                for i, leaf in enumerate(leaves)
            ]
            layer._seed_generators.extend(holders)
            self._treedefs[spin] = treedef
            self._holders[spin] = holders

    def plan(self, spin: int) -> SHTPlan:
        """The plan for `spin`, its tables read from the layer state (traced in fit)."""
        leaves = [holder.state.value for holder in self._holders[spin]]
        return jax.tree_util.tree_unflatten(self._treedefs[spin], leaves)

    def to_spectral(self, field, spins):
        """Forward SHT of every spin slice.

        Args:
            field: (batch, n_lat, n_lon, n_spins, channels), float (spin 0 only) or
                complex; cast to float32 / complex64 first (FFTs need 32-bit input).
            spins: spin of each entry of the spin axis.

        Returns:
            complex64, (batch, ell_max + 1, 2 ell_max + 1, n_spins, channels).
        """
        import jax.numpy as jnp

        if jnp.issubdtype(field.dtype, jnp.complexfloating):
            field = field.astype(jnp.complex64)
        else:
            field = field.astype(jnp.float32)
        slices = []
        for index, spin in enumerate(spins):
            part = jnp.moveaxis(field[..., index, :], -1, 1)  # [B, C, lat, lon]
            slices.append(self.plan(spin).forward(part))  # [B, C, ell, m]
        coeffs = jnp.stack(slices, axis=2)  # [B, C, S, ell, m]
        return jnp.transpose(coeffs, (0, 3, 4, 2, 1))

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
        slices = []
        for index, spin in enumerate(spins):
            part = jnp.moveaxis(coeffs[..., index, :], -1, 1)  # [B, C, ell, m]
            slices.append(self.plan(spin).inverse(part, is_real=is_real))
        field = jnp.stack(slices, axis=2)  # [B, C, S, lat, lon]
        return jnp.transpose(field, (0, 3, 4, 2, 1))
