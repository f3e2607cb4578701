"""`ScatterAtoms`: per-slot atom features back to the (batch, max_atoms) layout."""

from __future__ import annotations

import keras

__all__ = ["ScatterAtoms"]


@keras.saving.register_keras_serializable(package="keras_sphere")
class ScatterAtoms(keras.layers.Layer):
    """Puts the features of packed atom slots back at their (molecule, atom) place.

    The inverse of the packing done by `MoleculeFeaturizer`: slot k's features go to
    atom flat_index[k] of the flattened (batch * max_atoms) atoms; padded atoms get
    zeros. When the batch overflowed its slots (more real atoms than capacity), the
    whole output is NaN, so a too-small capacity can never pass for a result.

    Call arguments:
        features: float (capacity, F).
        flat_index: int (capacity,).
        valid: float (capacity,), 1 for a real atom's slot.
        overflow: bool ().
        charges: (batch, max_atoms), only for its shape.

    Returns:
        float (batch, max_atoms, F).
    """

    def compute_output_shape(self, features_shape, *shapes):
        return (None, None, features_shape[-1])

    def compute_output_spec(self, features, flat_index, valid, overflow, charges):
        return keras.KerasTensor(
            (charges.shape[0], charges.shape[1], features.shape[-1]), features.dtype
        )

    def call(self, features, flat_index, valid, overflow, charges):
        import jax.numpy as jnp

        batch, max_atoms = charges.shape
        width = features.shape[-1]
        scattered = jnp.zeros((batch * max_atoms, width), features.dtype)
        scattered = scattered.at[flat_index].add(features * valid[:, None])
        scattered = jnp.where(overflow, jnp.nan, scattered)
        return scattered.reshape(batch, max_atoms, width)
