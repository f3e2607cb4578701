"""`MoleculeTail`: per-atom features -> one molecular property (``models.md`` 1.4).

    atom features (B, A, F) -> Dense(width, relu) + type embedding + Dense(distance
    to the centre of mass) -> [deepsets: Dense(width, relu) | transformer: pre-LN
    encoder blocks over the real atoms, final LayerNorm] -> aggregation over atoms
    (divided by 29) -> concatenate 7 atom-count features / 29 -> Dense(width, relu)
    -> Dense(width, relu) -> Dense(1)

Aggregations (padded atoms masked; r_i relative to the centre of mass, divided by
`MAX_PAIR_DISTANCE_ANGSTROM`):

| name | formula |
|---|---|
| mean | sum_i h_i / 29 |
| weighted_by_atom_type | sum_i (h_i * w_type(i) + b_type(i)) / 29 |
| weighted_displacement | norm_c of sum_i h_ic r_i / 29 (a vector per channel) |
| weighted_by_distance_squared | sum_i h_i |r_i|^2 / 29 |

Every feature is rotation- and translation-invariant, so the output is too.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_sphere.models.qm9.molecule_featurizer import ATOM_TYPES
from keras_sphere.models.qm9.molecule_featurizer import MAX_ATOMS

__all__ = ["AGGREGATIONS", "TAILS", "MoleculeTail"]

AGGREGATIONS = (
    "mean",
    "weighted_by_atom_type",
    "weighted_displacement",
    "weighted_by_distance_squared",
)
TAILS = ("deepsets", "transformer")
# Standard atomic masses (u) of H, C, N, O, F, for the centre of mass.
ATOMIC_MASSES = (1.008, 12.011, 14.007, 15.999, 18.998)
# Largest pairwise distance in QM9 (Angstrom, anchor): the length scale of r_i.
MAX_PAIR_DISTANCE_ANGSTROM = 12.040386407885462


def _type_one_hot(charges):
    """float32 (B, A, 5) one-hot atom types; all zero for padding."""
    from keras import ops

    types = ops.convert_to_tensor(np.asarray(ATOM_TYPES, np.float32))
    return ops.cast(ops.cast(charges, "float32")[..., None] == types, "float32")


def _relative_positions(positions, one_hot):
    """Positions minus the centre of mass, / MAX_PAIR_DISTANCE_ANGSTROM (B, A, 3)."""
    from keras import ops

    masses = ops.sum(one_hot * np.asarray(ATOMIC_MASSES, np.float32), axis=-1)
    total = ops.maximum(ops.sum(masses, axis=1, keepdims=True), 1e-6)  # [B, 1]
    centre = ops.sum(masses[..., None] * positions, axis=1) / total  # [B, 3]
    relative = (positions - centre[:, None, :]) / MAX_PAIR_DISTANCE_ANGSTROM
    return relative * ops.sum(one_hot, axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="keras_sphere")
class MoleculeTail(keras.layers.Layer):
    """One molecular property from per-atom invariant features.

    Args:
        tail: "deepsets" or "transformer".
        aggregation: one of `AGGREGATIONS`.
        width: units of every dense layer (the anchor used 256).
        num_blocks: transformer encoder blocks.
        num_heads: attention heads per block.

    Call arguments:
        atom_features: float (batch, max_atoms, F), zero for padded atoms.
        charges: int (batch, max_atoms), 0 for padding.
        positions: float (batch, max_atoms, 3) Angstrom.

    Returns:
        float (batch, 1): the property, standardised (mean 0, std 1 over the
        training labels; `QM9Regressor` rescales it).
    """

    def __init__(
        self,
        tail: str = "deepsets",
        aggregation: str = "weighted_by_atom_type",
        width: int = 256,
        num_blocks: int = 4,
        num_heads: int = 4,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if tail not in TAILS:
            raise ValueError(f"tail must be one of {TAILS}. Received: tail={tail!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {AGGREGATIONS}. "
                f"Received: aggregation={aggregation!r}"
            )
        if int(width) % int(num_heads):
            raise ValueError(
                f"width ({width}) must be a multiple of num_heads ({num_heads})."
            )
        self.tail = tail
        self.aggregation = aggregation
        self.width = int(width)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        dense = keras.layers.Dense
        policy = self.dtype_policy
        self.atom_dense = dense(width, "relu", name="atom_dense", dtype=policy)
        self.distance_dense = dense(width, name="distance_dense", dtype=policy)
        self.blocks = []
        if tail == "deepsets":
            self.atom_dense_2 = dense(width, "relu", name="atom_dense_2", dtype=policy)
        else:
            for index in range(self.num_blocks):
                self.blocks.append(
                    [
                        keras.layers.LayerNormalization(
                            name=f"block_{index}_norm_1", dtype=policy
                        ),
                        keras.layers.MultiHeadAttention(
                            num_heads,
                            width // num_heads,
                            kernel_initializer="glorot_uniform",
                            name=f"block_{index}_attention",
                            dtype=policy,
                        ),
                        keras.layers.LayerNormalization(
                            name=f"block_{index}_norm_2", dtype=policy
                        ),
                        dense(width, "gelu", name=f"block_{index}_mlp_1", dtype=policy),
                        dense(width, name=f"block_{index}_mlp_2", dtype=policy),
                    ]
                )
            self.final_norm = keras.layers.LayerNormalization(
                name="final_norm", dtype=policy
            )
        self.head = [
            dense(width, "relu", name="head_1", dtype=policy),
            dense(width, "relu", name="head_2", dtype=policy),
            dense(1, name="head_out", dtype=policy),
        ]

    def build(self, atom_features_shape, charges_shape=None, positions_shape=None):
        n_types = len(ATOM_TYPES)
        atoms = (None, MAX_ATOMS)
        self.atom_dense.build((*atoms, atom_features_shape[-1]))
        self.distance_dense.build((*atoms, 1))
        self.type_embedding = self.add_weight(
            (n_types, self.width), initializer="zeros", name="type_embedding"
        )
        hidden = (*atoms, self.width)
        if self.tail == "deepsets":
            self.atom_dense_2.build(hidden)
        else:
            for norm_1, attention, norm_2, mlp_1, mlp_2 in self.blocks:
                norm_1.build(hidden)
                attention.build(hidden, hidden)
                norm_2.build(hidden)
                mlp_1.build(hidden)
                mlp_2.build(hidden)
            self.final_norm.build(hidden)
        if self.aggregation == "weighted_by_atom_type":
            self.type_scale = self.add_weight(
                (n_types, self.width), initializer="ones", name="type_scale"
            )
            self.type_bias = self.add_weight(
                (n_types, self.width), initializer="zeros", name="type_bias"
            )
        shape = (None, self.width + 7)
        for layer in self.head:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def compute_output_shape(self, atom_features_shape, *shapes):
        return (atom_features_shape[0], 1)

    def call(self, atom_features, charges, positions, training=None):
        from keras import ops

        one_hot = _type_one_hot(charges)  # [B, A, 5]
        is_real = ops.sum(one_hot, axis=-1)  # [B, A]
        relative = _relative_positions(ops.cast(positions, "float32"), one_hot)
        distance = ops.sqrt(ops.sum(relative**2, axis=-1, keepdims=True) + 1e-12)
        hidden = self.atom_dense(atom_features)
        hidden = hidden + ops.matmul(one_hot, self.type_embedding)
        hidden = hidden + self.distance_dense(distance)
        if self.tail == "deepsets":
            hidden = self.atom_dense_2(hidden)
        else:
            hidden = self._encode(hidden, is_real, training)
        hidden = hidden * is_real[..., None]
        pooled = self._aggregate(hidden, one_hot, relative)
        counts = ops.sum(one_hot, axis=1)  # [B, 5]
        total = ops.sum(counts, axis=-1, keepdims=True)
        count_features = ops.concatenate([counts, total, MAX_ATOMS - total], axis=-1)
        x = ops.concatenate([pooled, count_features / MAX_ATOMS], axis=-1)
        for layer in self.head:
            x = layer(x)
        return x

    def _encode(self, hidden, is_real, training):
        from keras import ops

        pair = ops.cast(is_real[:, :, None] * is_real[:, None, :], "bool")
        for norm_1, attention, norm_2, mlp_1, mlp_2 in self.blocks:
            normed = norm_1(hidden)
            hidden = hidden + attention(
                normed, normed, attention_mask=pair, training=training
            )
            hidden = hidden + mlp_2(mlp_1(norm_2(hidden)))
        return self.final_norm(hidden)

    def _aggregate(self, hidden, one_hot, relative):
        from keras import ops

        if self.aggregation == "mean":
            return ops.sum(hidden, axis=1) / MAX_ATOMS
        if self.aggregation == "weighted_by_atom_type":
            scale = ops.matmul(one_hot, self.type_scale)  # [B, A, W]
            bias = ops.matmul(one_hot, self.type_bias)
            return ops.sum(hidden * scale + bias, axis=1) / MAX_ATOMS
        if self.aggregation == "weighted_displacement":
            # [B, A, W] x [B, A, 3] -> [B, W, 3]
            vectors = ops.einsum("baw,bad->bwd", hidden, relative) / MAX_ATOMS
            return ops.sqrt(ops.maximum(ops.sum(vectors**2, axis=-1), 1e-8))
        squared = ops.sum(relative**2, axis=-1, keepdims=True)  # [B, A, 1]
        return ops.sum(hidden * squared, axis=1) / MAX_ATOMS

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tail": self.tail,
                "aggregation": self.aggregation,
                "width": self.width,
                "num_blocks": self.num_blocks,
                "num_heads": self.num_heads,
            }
        )
        return config
