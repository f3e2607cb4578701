"""Recipe of the ``qm9`` and ``qm9_h`` presets: train for hours, resume, export.

Data: real QM9 (DFT geometries) from ``keras_sphere.data.qm9`` (the qm9pack wheel,
extra ``[qm9]``), TFDS ``dimenet`` split 110,000 / 10,000 / 10,831. The model is a
`QM9Regressor` (models.md section 1) at the widths below, trained with L1 on
standardised labels; ``qm9`` predicts all 12 targets from one backbone, ``qm9_h``
predicts H and starts from the ``qm9`` run's best backbone and H tail.

    python zoo/qm9/train.py train --preset qm9 --hours 2      # resumes every time
    python zoo/qm9/train.py export --preset qm9               # test split, card

``train`` keeps its state in ``~/.cache/keras_sphere/runs/<preset>/`` (back-up every
epoch of STEPS_PER_EPOCH steps, about 15 minutes here; best weights by validation
loss; history.csv; learning_curve.png). ``export`` evaluates the best weights on the
whole test split next to the baselines and writes the preset folder zoo/<preset>/.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import time

import numpy as np

import keras_sphere  # selects the JAX backend

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # the siblings

from recipe import ATOM_REFERENCE  # noqa: E402
from recipe import BATCH  # noqa: E402
from recipe import PRESETS  # noqa: E402
from recipe import SEED  # noqa: E402
from recipe import STEPS_PER_EPOCH  # noqa: E402
from recipe import VALIDATION_MOLECULES  # noqa: E402
from recipe import ZOO  # noqa: E402
from recipe import build_model  # noqa: E402
from recipe import curve_metrics  # noqa: E402
from recipe import inputs_of  # noqa: E402
from recipe import label_model  # noqa: E402
from recipe import labels_of  # noqa: E402
from recipe import learning_rate_schedule  # noqa: E402
from recipe import load_splits  # noqa: E402
from recipe import recipe_record  # noqa: E402
from recipe import targets_of  # noqa: E402


def train(args) -> None:
    import keras

    from keras_sphere.models.qm9 import budget_layout
    from keras_sphere.training import BudgetedBatches
    from keras_sphere.training import set_seed
    from keras_sphere.training.loop import default_run_dir
    from keras_sphere.training.loop import fit_run
    from keras_sphere.training.loop import inherited_of

    started = time.time()  # compute.json counts loading and building too
    set_seed(SEED)
    targets = targets_of(args.preset)
    splits = load_splits(("train", "validation"))
    train_y = labels_of(splits["train"], targets)
    model = build_model(targets, *label_model(splits["train"], targets))
    run_dir = pathlib.Path(args.run_dir or default_run_dir(args.preset))
    _archive_other_label_model(run_dir)
    n_train = len(train_y[targets[0]])
    schedule = learning_rate_schedule(args.preset, n_train // BATCH)
    epochs = schedule.end_step // STEPS_PER_EPOCH
    model.compile(optimizer=keras.optimizers.Adam(schedule), jit_compile=True)
    start = starting_point(args.preset, run_dir)
    if start == "source":
        _init_from(model, PRESETS[args.preset]["init_from"])
    elif start == "shipped":
        _continue_shipped_preset(model, args.preset, run_dir)
    inherited = inherited_of(run_dir)
    train_x = inputs_of(splits["train"])
    batches = BudgetedBatches(
        train_x,
        train_y,
        costs=(train_x["charges"] > 0).sum(axis=1),
        capacity=model.backbone.atom_capacity(BATCH),
        batch_size=BATCH,
        steps_per_epoch=STEPS_PER_EPOCH,
        shuffle=True,
        seed=SEED,
    )
    # Rows come in ascending QM9 index, which sorts molecules by size: a random
    # (fixed) sample of the validation split, not its first rows.
    rows = np.sort(
        np.random.default_rng(SEED).permutation(len(splits["validation"]["index"]))[
            :VALIDATION_MOLECULES
        ]
    )
    val = {k: v[rows] for k, v in splits["validation"].items()}
    val_x, val_y, val_w = budget_layout(
        inputs_of(val),
        labels_of(val, targets),
        BATCH,
        model.backbone.atom_capacity(BATCH),
    )
    (run_dir / "recipe.json").parent.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.json").write_text(
        json.dumps(recipe_record(args.preset), indent=2)
    )
    result = fit_run(
        model,
        batches,
        run_dir,
        epochs=epochs - inherited.get("keras_epochs", 0),
        validation_data=(val_x, val_y, val_w),
        max_hours=args.hours,
        curve_metrics=curve_metrics(targets),
        verbose=args.verbose,
        started=started,
    )
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))


def starting_point(preset: str, run_dir: pathlib.Path) -> str:
    """Where a train call starts: "resume" (its run's back-up), "source" (a
    fine-tune's source preset), "shipped" (the preset in zoo/, when the run
    directory was lost) or "scratch".

    A fine-tune restarts from its source's current weights rather than from what
    it shipped, so that it follows a source that has trained further since.
    """
    from keras_sphere.training.loop import has_backup

    if has_backup(run_dir):
        return "resume"
    if PRESETS[preset]["init_from"]:
        return "source"
    if (ZOO / preset / "metrics.json").exists():
        return "shipped"
    return "scratch"


def _archive_other_label_model(run_dir: pathlib.Path) -> None:
    """Move aside a run trained with the other label model: its back-up would
    resume tails trained for other labels. The new run continues from the shipped
    preset's weights (the backbone carries over; the tails adapt)."""
    recipe_path = run_dir / "recipe.json"
    if not recipe_path.exists():
        return
    previous = json.loads(recipe_path.read_text()).get("atom_reference", False)
    if previous != ATOM_REFERENCE:
        archive = run_dir.with_name(f"{run_dir.name}-atom-reference-{previous}")
        shutil.rmtree(archive, ignore_errors=True)
        run_dir.rename(archive)
        print(f"{run_dir} used another label model: moved to {archive}")


def _init_from(model, preset: str) -> None:
    """Start from another preset's run (or its shipped preset): its backbone and
    the tails of the targets both predict (labels are standardised alike, so a
    copied tail predicts what it did there)."""
    from keras_sphere.training.loop import default_run_dir

    source = build_model(targets_of(preset), None, None)  # weights only
    best = default_run_dir(preset) / "best.weights.h5"
    if best.exists():
        source.load_weights(best)
    elif (ZOO / preset / "task.weights.h5").exists():
        source.load_weights(ZOO / preset / "task.weights.h5")
    else:
        raise FileNotFoundError(
            f"qm9_h starts from the {preset} model: train {preset} first "
            f"(no {best} and no zoo/{preset}/task.weights.h5)."
        )
    model.backbone.set_weights(source.backbone.get_weights())
    shared = [t for t in model.targets if t in source.targets]
    for target in shared:
        tail = f"tail_{target}"
        model.get_layer(tail).set_weights(source.get_layer(tail).get_weights())
    print(f"backbone and the tails of {shared} initialised from {preset}")


def _continue_shipped_preset(model, preset: str, run_dir: pathlib.Path) -> None:
    """Start a run whose directory was lost from the preset shipped in zoo/.

    The preset holds the best weights of the earlier run and, in its metrics, how
    many steps and hours made them: the new run continues the learning-rate
    schedule from that step and the card counts that compute too. Only Adam's
    moments are lost (they rebuild within a few hundred steps).
    """
    from keras_sphere.training.loop import continue_from_weights

    shipped = keras_sphere.zoo.load(str(ZOO / preset))
    training = json.loads((ZOO / preset / "metrics.json").read_text())["training"]
    projection = training.get("projection") or {}
    details = {}
    if projection.get("latest_validation_mae"):
        # Where the shipped run ended (validation MAE at its last epoch): the
        # export projects from there to this run's end (`project_from_shipped`).
        details["continued_end"] = {
            "target": projection["target"],
            "hours": float(projection["hours_so_far"]),
            "validation_mae": float(projection["latest_validation_mae"]),
        }
    inherited = continue_from_weights(
        model,
        shipped.get_weights(),
        run_dir,
        keras_epochs=int(training["keras_epochs"]),
        steps=int(training["steps"]),
        wall_seconds=float(training["wall_hours"]) * 3600.0,
        source=f"zoo/{preset} (the best weights of an earlier run)",
        **details,
    )
    print(f"continuing zoo/{preset}: {inherited['steps']} steps done before")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=("train", "export"))
    parser.add_argument("--preset", choices=tuple(PRESETS), default="qm9")
    parser.add_argument("--hours", type=float, default=None, help="wall budget")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument(
        "--test-molecules", type=int, default=None, help="export: a test subset"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="export: replace the shipped preset even if it validated better",
    )
    args = parser.parse_args(argv)
    if args.stage == "train":
        train(args)
    else:
        from export import export

        export(args)


if __name__ == "__main__":
    main()
