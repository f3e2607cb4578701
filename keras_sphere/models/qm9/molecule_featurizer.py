"""`MoleculeFeaturizer`: one spherical signal per atom, seen from that atom.

For atom i of a molecule, atom type z in (H, C, N, O, F) and power p in (2, 6), at the
grid direction x (``models.md`` section 1.2, after Esteves et al., ICML 2023):

    f_i^{z,p}(x) = sum_{j != i, Z_j = z} [Z_i Z_j / r_ij^p] / [Z_max^2 / r_min^p]
                   * exp(-(<x, r_ij / r_ij> - 1)^2 / sigma^2)

with r_ij = |pos_j - pos_i| in Angstrom, Z_max = 9 (fluorine), r_min the smallest
interatomic distance in QM9, and sigma^2 = (1 - cos c)^2 / ln 20 so that the Gaussian
falls to 5% at the angle c = pi / 4 from the bond direction. Channels are power-major
(index p_idx * 5 + type_idx). The signal depends only on differences of positions
(translation invariant) and turns with the molecule (rotation-equivariant up to the
grid's sampling).

Only real atoms are featurised: `pack_atoms` lists them across the batch in a fixed
number of slots, so padded atoms cost no compute downstream.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_sphere.layers.spins import check_jax_backend
from keras_sphere.sphere import Grid

__all__ = [
    "ATOM_TYPES",
    "MAX_ATOMS",
    "MoleculeFeaturizer",
    "atom_capacity",
    "pack_atoms",
]

MAX_ATOMS = 29  # largest QM9 molecule (atoms, hydrogens included)
ATOM_TYPES = (1, 6, 7, 8, 9)  # nuclear charges of H, C, N, O, F
POWERS = (2, 6)  # 2 ~ Coulomb, 6 ~ van der Waals
Z_MAX = 9.0  # fluorine: the normaliser's charge
R_MIN_ANGSTROM = 0.9586065591971576  # smallest pairwise distance in QM9 (anchor)
CONE_ANGLE = math.pi / 4  # the Gaussian is 5% of its peak at this angle


def atom_capacity(n_molecules: int, atoms_per_molecule: float) -> int:
    """Slots for the real atoms of `n_molecules` molecules (at least one molecule)."""
    return max(MAX_ATOMS, math.ceil(n_molecules * atoms_per_molecule))


def pack_atoms(charges, capacity: int):
    """Indices of the real atoms of a batch, listed in `capacity` slots.

    Args:
        charges: int (batch, max_atoms) nuclear charges, 0 for padding.
        capacity: number of slots (static).

    Returns:
        (flat_index int32 (capacity,), valid float32 (capacity,), overflow bool ()):
        slot k holds atom flat_index[k] of the flattened (batch * max_atoms) atoms
        when valid[k] is 1; empty slots point at atom 0 with valid 0. `overflow` is
        True when the batch has more real atoms than slots (those atoms are missing).
    """
    import jax.numpy as jnp

    is_real = jnp.reshape(jnp.asarray(charges) > 0, (-1,))
    (flat_index,) = jnp.nonzero(is_real, size=capacity, fill_value=0)
    count = jnp.sum(is_real.astype(jnp.int32))
    valid = (jnp.arange(capacity) < count).astype(jnp.float32)
    return flat_index.astype(jnp.int32), valid, count > capacity


@keras.saving.register_keras_serializable(package="keras_sphere")
class MoleculeFeaturizer(keras.layers.Layer):
    """Spherical signals (capacity, n, n, 1, 10) of the real atoms of a batch.

    Args:
        grid_size: n of the n x n equiangular grid (both poles); 32 gives L = 15.
        atoms_per_molecule: slots per molecule of a batch (the capacity is
            max(29, ceil(batch * atoms_per_molecule))). QM9 averages 18 atoms; a
            batch with more real atoms than slots gives NaN outputs rather than
            wrong ones (`QM9Regressor.predict` batches by atom count to avoid it).
        cone_angle: the angle (radians) at which each bond's Gaussian falls to 5%.

    Call arguments:
        positions: float (batch, max_atoms, 3), Angstrom.
        charges: int or float (batch, max_atoms), nuclear charges, 0 for padding.

    Returns:
        dict with "spheres" float32 (capacity, n, n, 1, 10) (power-major channels),
        "flat_index" int32 (capacity,), "valid" float32 (capacity,) (1 for a real
        atom's slot), "overflow" bool ().
    """

    def __init__(
        self,
        grid_size: int = 32,
        atoms_per_molecule: float = float(MAX_ATOMS),
        cone_angle: float = CONE_ANGLE,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_jax_backend(type(self).__name__)
        if int(grid_size) < 4 or int(grid_size) % 2:
            raise ValueError(
                "grid_size must be an even number >= 4 (n x n grid, L = n / 2 - 1). "
                f"Received: grid_size={grid_size}"
            )
        if not 1.0 <= float(atoms_per_molecule) <= MAX_ATOMS:
            raise ValueError(
                f"atoms_per_molecule must lie in [1, {MAX_ATOMS}]. "
                f"Received: atoms_per_molecule={atoms_per_molecule}"
            )
        if not 0.0 < float(cone_angle) < math.pi:
            raise ValueError(f"cone_angle must lie in (0, pi). Received: {cone_angle}")
        self.grid_size = int(grid_size)
        self.atoms_per_molecule = float(atoms_per_molecule)
        self.cone_angle = float(cone_angle)
        grid = Grid(self.grid_size, self.grid_size)
        theta, phi = np.meshgrid(grid.theta, grid.phi, indexing="ij")
        directions = np.stack(
            [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)],
            axis=-1,
        )  # [n, n, 3]
        self._directions = directions.reshape(-1, 3).astype(np.float32)
        self._sigma_squared = (1.0 - math.cos(self.cone_angle)) ** 2 / math.log(20.0)

    @property
    def n_channels(self) -> int:
        return len(POWERS) * len(ATOM_TYPES)

    def compute_output_shape(self, positions_shape, charges_shape=None):
        n = self.grid_size
        return {
            "spheres": (None, n, n, 1, self.n_channels),
            "flat_index": (None,),
            "valid": (None,),
            "overflow": (),
        }

    def compute_output_spec(self, positions, charges):
        shapes = self.compute_output_shape(positions.shape)
        dtypes = {
            "spheres": "float32",
            "flat_index": "int32",
            "valid": "float32",
            "overflow": "bool",
        }
        return {k: keras.KerasTensor(shapes[k], dtypes[k]) for k in shapes}

    def call(self, positions, charges):
        import jax.numpy as jnp

        positions = jnp.asarray(positions, jnp.float32)
        charges = jnp.asarray(charges).astype(jnp.float32)
        batch, max_atoms = charges.shape
        capacity = atom_capacity(batch, self.atoms_per_molecule)
        flat_index, valid, overflow = pack_atoms(charges, capacity)
        molecule, atom = flat_index // max_atoms, flat_index % max_atoms
        neighbours = positions[molecule]  # [k, j, 3]
        neighbour_charges = charges[molecule]  # [k, j]
        own_charge = charges[molecule, atom] * valid  # [k]
        offsets = neighbours - positions[molecule, atom][:, None, :]  # [k, j, 3]
        is_other = (jnp.arange(max_atoms)[None, :] != atom[:, None]) & (
            neighbour_charges > 0
        )
        is_other = is_other & (valid[:, None] > 0)
        # Mask before dividing: r_ii = 0 and padded atoms would give 0 * inf.
        distance = jnp.sqrt(jnp.sum(offsets**2, axis=-1))
        safe_distance = jnp.where(is_other, distance, 1.0)  # [k, j]
        unit = offsets / safe_distance[..., None]
        cosine = jnp.einsum("kjd,xd->kjx", unit, jnp.asarray(self._directions))
        bump = jnp.exp(-jnp.square(cosine - 1.0) / self._sigma_squared)  # [k, j, x]
        strengths = []
        for power in POWERS:
            scale = R_MIN_ANGSTROM**power / Z_MAX**2
            strengths.append(
                own_charge[:, None] * neighbour_charges * scale / safe_distance**power
            )
        strength = jnp.stack(strengths, axis=-1) * is_other[..., None]  # [k, j, p]
        types = jnp.asarray(ATOM_TYPES, jnp.float32)
        one_hot = (neighbour_charges[..., None] == types).astype(jnp.float32)
        weights = strength[..., :, None] * one_hot[..., None, :]  # [k, j, p, z]
        spheres = jnp.einsum("kjx,kjpz->kxpz", bump, weights)
        n = self.grid_size
        spheres = spheres.reshape(capacity, n, n, 1, self.n_channels)
        if not jnp.issubdtype(spheres.dtype, jnp.float32):
            spheres = spheres.astype(jnp.float32)
        return {
            "spheres": spheres,
            "flat_index": flat_index,
            "valid": valid,
            "overflow": overflow,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_size": self.grid_size,
                "atoms_per_molecule": self.atoms_per_molecule,
                "cone_angle": self.cone_angle,
            }
        )
        return config
