"""What both stages of the QM9 recipe share: the configuration, data and model.

``train.py`` (training, and the command line) and ``export.py`` (test split, card)
both import it, and export.py never imports train.py: the recipe's imports point one
way (train -> export -> card, and both -> recipe).
"""

from __future__ import annotations

import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ZOO = HERE.parent
# The preset's architecture: the anchor's blocks at half width, on 16 x 16 atom
# signals (L = 7) pooled to 8 x 8 and 4 x 4, tails at width 128. Measured on the
# 2-core CPU with other jobs running: one training step of 16 molecules took 10 s
# with the anchor's resolutions (32, 16, 16, 8, 8) and 1.6 s with these (one tail),
# so the preset sees about six times more molecules for the same CPU time.
WIDTHS = (32, 64, 64, 128, 128)
RESOLUTIONS = (16, 8, 8, 4, 4)
NUM_FILTER_PARAMS = (8, 4, 4, None, None)
ATOMS_PER_MOLECULE = 20.0  # QM9 averages 18.0 atoms; a batch of 16 overflows rarely
TAIL_WIDTH = 128
BATCH = 16
STEPS_PER_EPOCH = 500  # one Keras epoch = one checkpoint, ~15 min on 2 cores
VALIDATION_MOLECULES = 2000  # a fixed random sample of the validation split
# Predict each target as a per-element sum over atoms (ridge on atom counts, fitted
# on the training split) plus a learned residual (models/qm9/atom_reference.py).
ATOM_REFERENCE = True
SEED = 0
# Each preset's learning-rate schedule: warm-up to the peak, then cosine decay to 0
# over planned_epochs passes over the 110,000 training molecules, then any warm
# restarts, each (passes, fraction of the peak): a cosine from that fraction of
# the peak to 0, with Adam's state carried over. qm9's restart lets the run go on
# to the 12 hours after its first 4 passes (about 9.1 h here), over
# which validation H MAE was still falling (50.4 meV at 26,500 steps) as the rate
# neared 0 (lengthened during the run: "schedule_changes", which the card
# quotes; 1.5 passes would have ended it at about 11.7 h). That restart, at half
# the peak, threw validation H MAE from 50.4 to 90 meV and took 16 epochs (2 h)
# to get back below 50.4; the second, added when a later session continued the
# run, starts at 5e-5 (qm9_h's fine-tuning rate) and lasts 0.75 passes (about
# 1.3 h), so that it ends within one session: its setback was smaller (validation
# loss 0.957 to 1.03, back below 0.957 at the 8th of its 10 epochs). qm9 trains from
# scratch (the anchor's 1e-4 per 32 molecules is tuned for 2000 epochs; we have a
# few). qm9_h fine-tunes qm9's backbone and H tail: with qm9's warm-up to 3e-4 its
# validation H MAE jumped about (109, 316, 117, 169 meV over four epochs), so it
# starts at a sixth of that, with no warm-up, and decays within about 2,000 steps.
PRESETS = {
    "qm9": {
        "targets": None,
        "init_from": None,
        "peak_learning_rate": 3e-4,
        "warmup_steps": 1000,
        "planned_epochs": 4,
        "restarts": ((1.75, 0.5), (0.75, 1 / 6)),
        "schedule_changes": (
            "the first restart was planned over 1.5 passes and lengthened to 1.75 "
            "at step 32,000, where the rate rose from 0.90e-4 to 1.04e-4, so that "
            "the run reaches 12 hours; the second was added after the first had "
            "ended, at step 39,500"
        ),
    },
    "qm9_h": {
        "targets": ("H",),
        "init_from": "qm9",
        "peak_learning_rate": 5e-5,
        "warmup_steps": 0,
        "planned_epochs": 0.3,
        "restarts": (),
    },
}


def learning_rate_schedule(preset: str, steps_per_pass: int):
    """The preset's `WarmupCosineDecay`, its passes counted in optimizer steps."""
    from keras_sphere.training import WarmupCosineDecay

    schedule = PRESETS[preset]
    return WarmupCosineDecay(
        schedule["peak_learning_rate"],
        total_steps=round(schedule["planned_epochs"] * steps_per_pass),
        warmup_steps=schedule["warmup_steps"],
        restarts=tuple(
            (round(passes * steps_per_pass), scale)
            for passes, scale in schedule["restarts"]
        ),
    )


def load_splits(names=("train", "validation", "test")):
    from keras_sphere.data import qm9 as qm9_data

    return {name: qm9_data.load(name, config="dimenet") for name in names}


def inputs_of(columns) -> dict[str, np.ndarray]:
    return {
        "positions": np.asarray(columns["positions"], np.float32),
        "charges": np.asarray(columns["charges"], np.int32),
    }


def labels_of(columns, targets) -> dict[str, np.ndarray]:
    from keras_sphere.models.qm9 import TARGETS

    return {
        name: np.asarray(columns[TARGETS[name]["label"]], np.float32)
        for name in targets
    }


def label_model(columns, targets, atom_reference: bool = ATOM_REFERENCE):
    """(label_mean, label_std, atom_reference or None) from the training split.

    With an atom reference the mean and std are those of the residuals around
    the per-element fit, which the tails learn.
    """
    from keras_sphere.models.qm9 import atom_counts
    from keras_sphere.models.qm9 import fit_atom_reference

    labels = labels_of(columns, targets)
    values = None
    if atom_reference:
        values, _ = fit_atom_reference(columns["charges"], labels)
        counts = atom_counts(columns["charges"])
        labels = {k: v - counts @ np.asarray(values[k]) for k, v in labels.items()}
    mean = {k: float(np.mean(v)) for k, v in labels.items()}
    std = {k: float(np.std(v)) for k, v in labels.items()}
    return mean, std, values


def build_model(targets, label_mean, label_std, atom_reference=None):
    from keras_sphere.models.qm9 import QM9Backbone
    from keras_sphere.models.qm9 import QM9Regressor

    backbone = QM9Backbone(
        widths=WIDTHS,
        resolutions=RESOLUTIONS,
        num_filter_params=NUM_FILTER_PARAMS,
        atoms_per_molecule=ATOMS_PER_MOLECULE,
    )
    return QM9Regressor(
        backbone,
        targets=targets,
        tail_width=TAIL_WIDTH,
        label_mean=label_mean,
        label_std=label_std,
        atom_reference=atom_reference,
    )


def targets_of(preset: str):
    from keras_sphere.models.qm9 import TARGET_NAMES

    return PRESETS[preset]["targets"] or TARGET_NAMES


def recipe_record(preset: str) -> dict:
    return {
        "preset": preset,
        "widths": WIDTHS,
        "resolutions": RESOLUTIONS,
        "num_filter_params": NUM_FILTER_PARAMS,
        "atoms_per_molecule": ATOMS_PER_MOLECULE,
        "tail_width": TAIL_WIDTH,
        "batch": BATCH,
        "peak_learning_rate": PRESETS[preset]["peak_learning_rate"],
        "warmup_steps": PRESETS[preset]["warmup_steps"],
        "planned_epochs": PRESETS[preset]["planned_epochs"],
        "restarts": PRESETS[preset]["restarts"],
        "schedule_changes": PRESETS[preset].get("schedule_changes"),
        "steps_per_keras_epoch": STEPS_PER_EPOCH,
        "validation_molecules": VALIDATION_MOLECULES,
        "atom_reference": ATOM_REFERENCE,
        "validation_sample": f"a random sample, seed {SEED}",
        "seed": SEED,
        "split": "dimenet (TFDS qm9), 110,000 / 10,000 / 10,831",
    }


def validation_mae_key(targets, target: str) -> str:
    """The history's column of `target`'s validation MAE.

    Keras prefixes metrics with the output's name only when a model has several
    outputs: ``val_H_mae`` for ``qm9``, ``val_mae`` for ``qm9_h``.
    """
    return f"val_{target}_mae" if len(targets) > 1 else "val_mae"


def curve_metrics(targets) -> list[str]:
    """The history columns a learning curve shows: the losses and the validation
    MAE of H, the goal's target (in Hartree). One list for the run directory's
    live plot and the card's redrawn one."""
    return ["loss", "val_loss", validation_mae_key(targets, "H")]
