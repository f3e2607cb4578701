"""`QM9Regressor`: molecular properties from positions and charges.

A `QM9Backbone` and one `MoleculeTail` per target (the recipe of `qm9_targets`),
each tail followed by the de-standardisation of its target and, where given, a
per-element reference sum over the molecule's atoms (`AtomReference`), so outputs are
in QM9's units. Training uses L1 on standardised labels (``models.md`` section
1.7), which is MAE in QM9 units weighted by 1 / std per target: the default
`compile` does that.
"""

from __future__ import annotations

import keras
import keras_hub
import numpy as np

from keras_sphere.models._trainer_state import restore_variables_on_error
from keras_sphere.models.qm9.atom_reference import AtomReference
from keras_sphere.models.qm9.molecule_featurizer import ATOM_TYPES
from keras_sphere.models.qm9.molecule_featurizer import MAX_ATOMS
from keras_sphere.models.qm9.molecule_tail import MoleculeTail
from keras_sphere.models.qm9.qm9_backbone import QM9Backbone
from keras_sphere.models.qm9.qm9_targets import TARGET_NAMES
from keras_sphere.models.qm9.qm9_targets import TARGETS

__all__ = [
    "QM9Regressor",
    "RandomMoleculeRotation",
    "budget_layout",
    "check_molecules",
]


@keras.saving.register_keras_serializable(package="keras_sphere")
class RandomMoleculeRotation(keras.layers.Layer):
    """A random orthogonal 3 x 3 matrix per molecule applied to its positions.

    Active only in training (train-time augmentation of ``models.md`` 1.2): the QR
    decomposition of a Gaussian matrix with the signs of R's diagonal moved into Q,
    which is Haar-distributed over O(3) (reflections included).

    Args:
        active: rotate in training; False makes the layer the identity.
        seed: seed of the layer's `keras.random.SeedGenerator`.

    Call arguments:
        positions: float (batch, atoms, 3).
        training: rotate when True.
    """

    def __init__(self, active: bool = True, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.active = bool(active)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, positions, training=None):
        from keras import ops

        if not (training and self.active):
            return positions
        gaussian = keras.random.normal(
            (ops.shape(positions)[0], 3, 3), seed=self.seed_generator
        )
        q, r = ops.linalg.qr(gaussian)
        signs = ops.sign(ops.diagonal(r, axis1=-2, axis2=-1))
        signs = ops.where(signs == 0, 1.0, signs)
        rotation = q * signs[:, None, :]
        return ops.einsum("bad,bed->bae", positions, rotation)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "active": self.active, "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_sphere")
class QM9Regressor(keras_hub.models.Task):
    """Predicts QM9 properties of molecules, one output per target.

    Args:
        backbone: a `QM9Backbone`.
        targets: target names from `TARGET_NAMES` (mu, alpha, homo, lumo, gap, r2,
            zpve, U0, U, H, G, Cv); each gets the tail and aggregation of the
            per-target recipe (`TARGETS`).
        tail_width: units of the tails' dense layers (anchor: 256).
        label_mean: per-target mean of the training labels (QM9 units), a dict or
            a sequence in the order of `targets`; default 0. With an atom
            reference, the mean of the labels minus their reference sums.
        label_std: per-target standard deviation, likewise; default 1.
        atom_reference: optional dict target -> values of one atom of H, C, N, O,
            F (QM9 units; `fit_atom_reference` on the training split). Those
            targets are predicted as the sum of their atoms' values plus the
            tail's de-standardised residual; the others as before.
        augment_rotations: rotate each training molecule at random.
        preprocessor: unused (keras-hub signature); must be None.

    Inputs: dict with "positions" float32 (batch, 29, 3) Angstrom and "charges" int32
    (batch, 29) (0 for padding); `keras_sphere.data.qm9` makes both.
    Outputs: dict target -> float32 (batch,) in QM9 units (`TARGETS[name]["unit"]`;
    energies in Hartree, U0/U/H/G as atomization energies).
    """

    backbone_cls = QM9Backbone
    preprocessor_cls = None

    def __init__(
        self,
        backbone: QM9Backbone,
        targets=TARGET_NAMES,
        tail_width: int = 256,
        label_mean=None,
        label_std=None,
        atom_reference=None,
        augment_rotations: bool = True,
        preprocessor=None,
        **kwargs,
    ):
        if preprocessor is not None:
            raise ValueError(
                "QM9Regressor takes positions and charges: preprocessor=None."
            )
        targets = tuple(targets)
        unknown = [t for t in targets if t not in TARGETS]
        if unknown or not targets or len(set(targets)) != len(targets):
            raise ValueError(
                f"targets must be distinct names from {TARGET_NAMES}. "
                f"Received: targets={targets}"
            )
        label_mean = _per_target(label_mean, targets, 0.0, "label_mean")
        label_std = _per_target(label_std, targets, 1.0, "label_std")
        if any(not s > 0 for s in label_std.values()):
            raise ValueError(f"label_std must be positive. Received: {label_std}")
        atom_reference = {
            name: [float(v) for v in values]
            for name, values in (atom_reference or {}).items()
        }
        unknown = [name for name in atom_reference if name not in targets]
        if unknown:
            raise ValueError(
                f"atom_reference has entries for {unknown}, which are not among "
                f"targets {targets}."
            )
        self.backbone = backbone
        self.preprocessor = None
        policy = backbone.dtype_policy
        positions = keras.Input((MAX_ATOMS, 3), name="positions")
        charges = keras.Input((MAX_ATOMS,), dtype="int32", name="charges")
        rotated = RandomMoleculeRotation(
            active=augment_rotations, name="random_rotation", dtype=policy
        )(positions)
        atom_features = backbone({"positions": rotated, "charges": charges})
        outputs = {}
        for name in targets:
            recipe = TARGETS[name]
            standardised = MoleculeTail(
                recipe["tail"],
                recipe["aggregation"],
                tail_width,
                name=f"tail_{name}",
                dtype=policy,
            )(atom_features, charges, rotated)
            scaled = keras.layers.Rescaling(
                label_std[name], label_mean[name], name=f"scale_{name}", dtype=policy
            )(standardised)
            if name in atom_reference:
                reference = AtomReference(
                    atom_reference[name], name=f"reference_{name}", dtype=policy
                )(charges)
                scaled = keras.layers.Add(name=f"add_reference_{name}", dtype=policy)(
                    [scaled, reference]
                )
            outputs[name] = keras.layers.Reshape((), name=name, dtype=policy)(scaled)
        # compile() (called by Task.__init__) reads the targets and their scales.
        self.targets = targets
        self.label_std = label_std
        super().__init__(
            inputs={"positions": positions, "charges": charges},
            outputs=outputs,
            **kwargs,
        )
        self.targets = targets
        self.tail_width = int(tail_width)
        self.label_mean = label_mean
        self.label_std = label_std
        self.atom_reference = atom_reference
        self.augment_rotations = bool(augment_rotations)

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        *,
        loss_weights="auto",
        metrics="auto",
        **kwargs,
    ):
        """Adam(1e-4), L1 on standardised labels and MAE per target by default."""
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-4)
        if loss == "auto":
            loss = {name: "mean_absolute_error" for name in self.targets}
        if loss_weights == "auto":
            loss_weights = {name: 1.0 / self.label_std[name] for name in self.targets}
        if metrics == "auto":
            metrics = {
                name: [keras.metrics.MeanAbsoluteError(name="mae")]
                for name in self.targets
            }
        super().compile(
            optimizer=optimizer,
            loss=loss,
            loss_weights=loss_weights,
            metrics=metrics,
            **kwargs,
        )

    # Without a preprocessor there is nothing for keras-hub's tf.data pipeline to
    # do; Keras' own loops also take a PyDataset (the recipes' resumable batches).
    # A failed call keeps the weights (see `restore_variables_on_error`).
    def fit(self, *args, **kwargs):
        with restore_variables_on_error(self, build_optimizer=True):
            return keras.Model.fit(self, *args, **kwargs)

    def evaluate(self, *args, **kwargs):
        with restore_variables_on_error(self):
            return keras.Model.evaluate(self, *args, **kwargs)

    train_on_batch = keras.Model.train_on_batch
    test_on_batch = keras.Model.test_on_batch
    predict_on_batch = keras.Model.predict_on_batch

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        """Properties of molecules, batched so that no batch overflows its slots.

        Args:
            x: dict with "positions" (n, 29, 3) and "charges" (n, 29), or a
                (positions, charges) pair; checked by `check_molecules`.
            batch_size: molecules per batch (default 32). Consecutive molecules
                are grouped while their atoms fit the backbone's slots.
            verbose: as `keras.Model.predict`.
            **kwargs: other `keras.Model.predict` arguments.

        Returns:
            dict target -> float32 (n,) in QM9 units.
        """
        positions, charges = check_molecules(x)
        batch_size = int(batch_size or 32)
        padded, _, weights = budget_layout(
            {"positions": positions, "charges": charges},
            None,
            batch_size,
            self.backbone.atom_capacity(batch_size),
        )
        is_real = weights > 0
        with restore_variables_on_error(self):
            outputs = keras.Model.predict(
                self, padded, batch_size=batch_size, verbose=verbose, **kwargs
            )
        return {name: np.asarray(value)[is_real] for name, value in outputs.items()}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "targets": list(self.targets),
                "tail_width": self.tail_width,
                "label_mean": dict(self.label_mean),
                "label_std": dict(self.label_std),
                "atom_reference": dict(self.atom_reference),
                "augment_rotations": self.augment_rotations,
            }
        )
        return config


def _per_target(values, targets, default: float, what: str) -> dict[str, float]:
    if values is None:
        return {name: default for name in targets}
    if isinstance(values, dict):
        missing = [name for name in targets if name not in values]
        if missing:
            raise ValueError(f"{what} has no entry for targets {missing}.")
        return {name: float(values[name]) for name in targets}
    values = list(values)
    if len(values) != len(targets):
        raise ValueError(
            f"{what} needs one value per target ({len(targets)}). Received {values}."
        )
    return {name: float(v) for name, v in zip(targets, values, strict=True)}


def budget_layout(x, y, batch_size: int, capacity: int):
    """Molecules laid out in batches that fit `capacity` atoms, in order.

    Consecutive molecules fill a batch until it holds `batch_size` molecules or the
    next one would exceed `capacity` atoms; the rest of the batch is padding (empty
    molecules). Feed the result to `predict` or `evaluate` with `batch_size`.

    Args:
        x: dict with "positions" (n, 29, 3) and "charges" (n, 29).
        y: dict of label arrays (n,), or None.
        batch_size: molecules per batch.
        capacity: atom slots per batch (`QM9Backbone.atom_capacity`).

    Returns:
        (x, y, sample_weight) with a multiple of `batch_size` rows; sample_weight
        float32 is 1 for molecules and 0 for padding.
    """
    counts = (np.asarray(x["charges"]) > 0).sum(axis=1)
    rows, batch, atoms = [], [], 0
    for index, count in enumerate(counts):
        if len(batch) == batch_size or atoms + count > capacity:
            rows += batch + [-1] * (batch_size - len(batch))
            batch, atoms = [], 0
        batch.append(index)
        atoms += int(count)
    if batch:
        rows += batch + [-1] * (batch_size - len(batch))
    rows = np.asarray(rows, np.int64)
    is_real = rows >= 0
    source = np.where(is_real, rows, 0)

    def take(array):
        taken = np.asarray(array)[source]
        return np.where(is_real.reshape(-1, *([1] * (taken.ndim - 1))), taken, 0)

    x = {name: take(value) for name, value in x.items()}
    y = None if y is None else {name: take(value) for name, value in y.items()}
    return x, y, is_real.astype(np.float32)


def check_molecules(x) -> tuple[np.ndarray, np.ndarray]:
    """Validated (positions float32 (n, 29, 3), charges int32 (n, 29)) from `x`.

    Raises:
        ValueError: wrong shapes; non-finite positions, unknown elements (QM9 has
            H, C, N, O, F only) or molecules without atoms, naming the molecules.
    """
    if isinstance(x, dict):
        positions, charges = x.get("positions"), x.get("charges")
    elif isinstance(x, (tuple, list)) and len(x) == 2:
        positions, charges = x
    else:
        raise TypeError(
            "Pass molecules as {'positions': (n, 29, 3), 'charges': (n, 29)} or a "
            f"(positions, charges) pair. Received: {type(x).__name__}"
        )
    positions = np.asarray(positions, np.float32)
    charges = np.asarray(charges)
    if positions.ndim != 3 or positions.shape[1:] != (MAX_ATOMS, 3):
        raise ValueError(
            f"positions must have shape (n, {MAX_ATOMS}, 3) in Angstrom, zero-padded "
            f"(keras_sphere.data.qm9 makes them). Received {positions.shape}."
        )
    if charges.shape != positions.shape[:2]:
        raise ValueError(
            f"charges must have shape {positions.shape[:2]} (one per atom slot, 0 for "
            f"padding). Received {charges.shape}."
        )
    charges = charges.astype(np.int32)
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=(1, 2)))
    if bad.size:
        raise ValueError(
            f"positions of molecules {bad[:10].tolist()} are not finite (NaN or inf); "
            "fix or drop those molecules."
        )
    known = np.isin(charges, (0, *ATOM_TYPES))
    bad = np.flatnonzero(~known.all(axis=1))
    if bad.size:
        elements = sorted(set(charges[~known].tolist()))
        raise ValueError(
            f"molecules {bad[:10].tolist()} have atoms with nuclear charges "
            f"{elements}; QM9 models know H, C, N, O and F only (charges "
            f"{ATOM_TYPES})."
        )
    bad = np.flatnonzero((charges > 0).sum(axis=1) == 0)
    if bad.size:
        raise ValueError(f"molecules {bad[:10].tolist()} have no atoms.")
    return positions, charges
