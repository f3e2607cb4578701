"""Export stage of the QM9 recipe: test-split metrics, baselines, preset, card.

Called by ``python zoo/qm9/train.py export --preset qm9`` (see train.py): loads the
run's best weights, predicts the whole ``dimenet`` test split, fits the baselines on
the training split, measures rotation invariance and the SMILES-geometry error, and
writes the preset folder zoo/<preset>/ with metrics.json, training_curves.png and
the model card. Prints the weights' sha256 for keras_sphere/zoo/presets.py.
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np
from card import GOAL_H_MEV
from card import write_card
from recipe import BATCH
from recipe import PRESETS
from recipe import ZOO
from recipe import build_model
from recipe import curve_metrics
from recipe import inputs_of
from recipe import label_model
from recipe import labels_of
from recipe import learning_rate_schedule
from recipe import load_splits
from recipe import recipe_record
from recipe import targets_of
from recipe import validation_mae_key

PAPER_MAE_MEV = {"H": 5.69}  # "Scaling Spherical CNNs", default config (README)
ROTATION_MOLECULES = 256
SMILES_MOLECULES = 200
# A learning-curve projection is fitted to the later half of the run's epochs (at
# least MIN_PROJECTION_EPOCHS): long enough to average over a cosine cycle's fast
# middle and flat end. A window of the last 6 epochs swung from slope -1.36 to
# -0.16 (14 h to 730 h) between two exports as qm9's first cosine ended.
MIN_PROJECTION_EPOCHS = 6
# Recipe fields that fix what the validation loss measures: two runs that agree on
# them score the same molecules with the same label model, so their losses compare.
VALIDATION_FIELDS = (
    "preset",
    "atom_reference",
    "validation_molecules",
    "validation_sample",
    "seed",
    "split",
)


def _sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """A fixed random sample of `size` of `n` rows, in ascending order."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def mae_table(predictions, labels, targets) -> dict[str, float]:
    """MAE per target in the literature's units."""
    from keras_sphere.models.qm9.qm9_targets import to_report_units

    return {
        name: float(
            to_report_units(name, np.mean(np.abs(predictions[name] - labels[name])))
        )
        for name in targets
    }


def ridge_predictions(train, train_y, test) -> dict[str, np.ndarray]:
    """Ridge regression on atom-type counts (with intercept), closed form."""
    from keras_sphere.models.qm9 import atom_counts
    from keras_sphere.models.qm9 import fit_atom_reference

    values, intercept = fit_atom_reference(train["charges"], train_y)
    counts = atom_counts(test["charges"])
    return {k: counts @ np.asarray(values[k]) + intercept[k] for k in train_y}


def rotation_check(model, test_x, targets, seed=0) -> dict[str, float]:
    """Mean |prediction change| under random rotations (report units)."""
    from scipy.spatial.transform import Rotation

    from keras_sphere.models.qm9.qm9_targets import to_report_units

    # Rows are sorted by QM9 index, hence by size: take a random sample.
    rows = _sample_rows(len(test_x["charges"]), ROTATION_MOLECULES, seed)
    x = {k: v[rows] for k, v in test_x.items()}
    rotations = Rotation.random(len(x["positions"]), random_state=seed).as_matrix()
    turned = dict(x, positions=np.einsum("nad,ned->nae", x["positions"], rotations))
    a = model.predict(x, batch_size=BATCH, verbose=0)
    b = model.predict(turned, batch_size=BATCH, verbose=0)
    return {
        name: float(to_report_units(name, np.mean(np.abs(a[name] - b[name]))))
        for name in targets
    }


# A power law flatter than this (0.07% per doubling of the hours) gives no estimate.
FLATTEST_SLOPE = -1e-3


def hours_at(mae: float, slope: float, anchor_hours: float, anchor_mae: float) -> float:
    """Hours at which the power law MAE ∝ hours**slope through the point
    (`anchor_hours`, `anchor_mae`) reaches `mae` (same units as `anchor_mae`)."""
    return float(anchor_hours * (mae / anchor_mae) ** (1.0 / slope))


def project_hours_to_goal(
    history, target: str, goal: float, inherited_hours: float = 0.0, key=None
) -> dict:
    """When the validation MAE of `target` would reach `goal` (report units).

    Fits a power law, MAE = a * hours**slope, to the validation MAE of the later
    half of the history's epochs (at least MIN_PROJECTION_EPOCHS) against the
    wall hours of training so far (including
    those of a preset the run continued from). A rough extrapolation: it assumes
    the recent rate of improvement goes on, which a decaying learning rate and the
    model's capacity may not allow. `hours_to_goal` is None when the fit does not
    fall. `key`: the history's column (default ``val_<target>_mae``).
    """
    from keras_sphere.models.qm9.qm9_targets import to_report_units

    key = key or f"val_{target}_mae"
    hours = inherited_hours + np.cumsum([row["seconds"] for row in history]) / 3600
    points = [(h, r[key]) for h, r in zip(hours, history, strict=True) if key in r]
    points = points[-max(MIN_PROJECTION_EPOCHS, len(points) // 2) :]
    projection = {"target": target, "goal": goal, "fitted_epochs": len(points)}
    if len(points) < 3:
        return dict(projection, slope=None, hours_to_goal=None)
    log_hours = np.log([h for h, _ in points])
    log_mae = np.log([float(to_report_units(target, m)) for _, m in points])
    slope, intercept = np.polyfit(log_hours, log_mae, 1)
    reach = None
    if slope < FLATTEST_SLOPE:
        reach = hours_at(goal, slope, anchor_hours=1.0, anchor_mae=np.exp(intercept))
    return dict(
        projection,
        slope=float(slope),
        latest_validation_mae=float(np.exp(log_mae[-1])),
        hours_so_far=float(hours[-1]),
        hours_to_goal=reach,
    )


def cycle_end_points(
    history,
    key: str,
    target: str,
    cycle_ends,
    inherited_steps: int,
    steps_per_epoch: int,
    inherited_hours: float = 0.0,
) -> list[tuple[float, float]]:
    """(hours, validation MAE in report units) of the run's epochs that end a
    learning-rate cycle.

    Epoch k of the run (1-based) ends at step ``inherited_steps + k *
    steps_per_epoch``; the epoch that ends a cycle is the last one before the
    step where the cycle ends (`cycle_ends`, the schedule's). Cycles the run
    has not finished, and those that ended before it started, give no point.
    """
    from keras_sphere.models.qm9.qm9_targets import to_report_units

    hours = inherited_hours + np.cumsum([row["seconds"] for row in history]) / 3600
    points = []
    for end in cycle_ends:
        epoch = (end - inherited_steps) // steps_per_epoch
        if 1 <= epoch <= len(history) and key in history[epoch - 1]:
            mae = float(to_report_units(target, history[epoch - 1][key]))
            points.append((float(hours[epoch - 1]), mae))
    return points


def project_from_shipped(
    within_run: dict, continued_end: dict, cycle_ends: list[tuple[float, float]]
) -> dict:
    """When the validation MAE would reach the goal, from the ends of the
    learning-rate cycles: the shipped preset's that this run continued, then
    each cycle this run finished.

    A run continued from the shipped preset starts with a warm restart (or fresh
    Adam moments) that throws the model back, and each further restart does
    again; the curve then falls fast while it recovers, and a fit over epochs
    overstates the rate (qm9's first restart: a slope of -1.9 within the run
    against -0.34 from one cycle's end to the next). Only the ends of cycles,
    all at a decayed learning rate, compare like with like: the slope is the
    least-squares power law through them, anchored at the last. `within_run`:
    ``project_hours_to_goal`` of this run (kept, as ``within_run``);
    `continued_end`: the shipped preset's last epoch, as the run recorded it when
    it started (``inherited.json``'s "continued_end": "hours" of training,
    "validation_mae" in report units); `cycle_ends`: `cycle_end_points` of this
    run. With no finished cycle, the run's last epoch stands in for one.
    """
    points = [(continued_end["hours"], continued_end["validation_mae"])]
    points += cycle_ends or [
        (within_run["hours_so_far"], within_run["latest_validation_mae"])
    ]
    hours, mae = np.log(np.asarray(points)).T
    slope = float(np.polyfit(hours, mae, 1)[0])
    reach = None
    if slope < FLATTEST_SLOPE:
        reach = hours_at(within_run["goal"], slope, *points[-1])
    return {
        "target": within_run["target"],
        "goal": within_run["goal"],
        "method": "from_shipped",
        "cycle_ends": [list(point) for point in points],
        "slope": slope,
        # The anchor of the projection: the last cycle's end.
        "latest_validation_mae": points[-1][1],
        "hours_at_latest": points[-1][0],
        "hours_so_far": max(within_run["hours_so_far"], points[-1][0]),
        "hours_to_goal": reach,
        "within_run": within_run,
    }


def project_fine_tune_hours(
    source_projection: dict, source_mae: float, own_mae: float, own_hours: float
) -> dict | None:
    """When a fine-tune of a source preset would reach the source's goal.

    A fine-tune's own curve is a few epochs of fast first drop, too short and too
    steep to extrapolate. It is projected through its source instead: the
    fine-tune is taken to keep the ratio `own_mae / source_mae` (test MAEs, report
    units) to whatever backbone it starts from, so it reaches the goal when the
    source's power law reaches goal / ratio, plus the fine-tune's own hours.
    `source_projection`: the source's ``project_hours_to_goal`` result. None when
    the source has no falling fit.
    """
    slope = source_projection.get("slope")
    if slope is None or slope >= FLATTEST_SLOPE:
        return None
    ratio = own_mae / source_mae
    source_goal = source_projection["goal"] / ratio
    source_hours = hours_at(
        source_goal,
        slope,
        anchor_hours=source_projection.get(
            "hours_at_latest", source_projection["hours_so_far"]
        ),
        anchor_mae=source_projection["latest_validation_mae"],
    )
    return {
        "target": source_projection["target"],
        "goal": source_projection["goal"],
        "method": "through_source",
        "ratio_to_source": ratio,
        "source_goal": source_goal,
        "slope": slope,
        "fitted_epochs": source_projection.get("fitted_epochs"),
        "source_method": source_projection.get("method", "fit"),
        "hours_so_far": source_projection["hours_so_far"] + own_hours,
        "hours_to_goal": max(source_hours, source_projection["hours_so_far"])
        + own_hours,
    }


def smiles_check(model, test, targets, predictions) -> dict:
    """Extra error when test geometries come from RDKit (ETKDG + MMFF) not DFT."""
    from keras_sphere.data import qm9 as qm9_data

    rows, positions, charges = [], [], []
    for row in _sample_rows(len(test["SMILES"]), SMILES_MOLECULES, 1):
        try:
            p, c = qm9_data.from_smiles(str(test["SMILES"][row]))
        except ValueError:
            continue
        if (c > 0).sum() != (test["charges"][row] > 0).sum():
            continue  # formula differs from the DFT molecule: not comparable
        rows.append(row)
        positions.append(p[0])
        charges.append(c[0])
    rows = np.asarray(rows)
    rdkit = model.predict(
        (np.stack(positions), np.stack(charges)), batch_size=BATCH, verbose=0
    )
    labels = labels_of({k: v[rows] for k, v in test.items()}, targets)
    dft = {name: predictions[name][rows] for name in targets}
    return {
        "molecules": int(len(rows)),
        "mae_dft_geometry": mae_table(dft, labels, targets),
        "mae_rdkit_geometry": mae_table(rdkit, labels, targets),
    }


def source_metrics(init_from: str | None) -> dict | None:
    """The shipped metrics.json of the preset a fine-tune starts from, if any."""
    if init_from and (ZOO / init_from / "metrics.json").exists():
        return json.loads((ZOO / init_from / "metrics.json").read_text())
    return None


def draw_learning_curve(history, targets, path) -> None:
    """The card's learning curve: losses and the validation MAE of H (the goal's
    target, in Hartree), against the epochs of the run directory."""
    from keras_sphere.plotting import plot_learning_curves

    plot_learning_curves(history, path, curve_metrics(targets))


def shipped_loss_to_beat(run_recipe: dict, directory: pathlib.Path) -> float | None:
    """The best validation loss of the preset shipped in ``directory``, when it
    was measured like this run's (same molecules, same label model); None when
    nothing is shipped or the losses do not compare."""
    metrics_path = directory / "metrics.json"
    metadata_path = directory / "metadata.json"
    if not (metrics_path.exists() and metadata_path.exists()):
        return None
    shipped_recipe = json.loads(metadata_path.read_text())["keras_sphere"]["recipe"]
    if any(shipped_recipe.get(f) != run_recipe.get(f) for f in VALIDATION_FIELDS):
        return None
    return json.loads(metrics_path.read_text())["training"].get("best_val_loss")


def check_beats_shipped(
    run_best: float, run_recipe: dict, directory: pathlib.Path
) -> None:
    """Refuse to replace a shipped preset with a run's worse best weights.

    A run continued from the shipped preset keeps only its own epochs in
    best.weights.h5: until it beats the shipped weights, exporting it would ship
    a worse model. An equal loss is the shipped checkpoint itself (the run that
    made it, exported again), which may be. Raises SystemExit saying what to do
    (train on, or --force).
    """
    to_beat = shipped_loss_to_beat(run_recipe, directory)
    if to_beat is not None and run_best > to_beat:
        raise SystemExit(
            f"the run's best validation loss {run_best:.4f} does not beat the "
            f"shipped {directory.name} preset's {to_beat:.4f} (same validation "
            "molecules): train on, or export with --force to replace it anyway."
        )


def export(args) -> None:
    from keras_sphere.training.loop import default_run_dir
    from keras_sphere.training.loop import inherited_of
    from keras_sphere.training.loop import lineage_totals
    from keras_sphere.training.loop import read_history
    from keras_sphere.zoo import save_preset

    preset = args.preset
    targets = targets_of(preset)
    run_dir = pathlib.Path(args.run_dir or default_run_dir(preset))
    recipe_path = run_dir / "recipe.json"
    recipe = (
        json.loads(recipe_path.read_text())
        if recipe_path.exists()
        else recipe_record(preset)
    )
    history = read_history(run_dir / "history.csv")
    best_val_loss = min(r["val_loss"] for r in history if "val_loss" in r)
    if not getattr(args, "force", False):
        check_beats_shipped(best_val_loss, recipe, ZOO / preset)
    splits = load_splits()
    train_y = labels_of(splits["train"], targets)
    mean, std, reference = label_model(
        splits["train"], targets, recipe.get("atom_reference", False)
    )
    model = build_model(targets, mean, std, reference)
    model.load_weights(run_dir / "best.weights.h5")
    test = splits["test"]
    if args.test_molecules:
        test = {k: v[: args.test_molecules] for k, v in test.items()}
    test_x, test_y = inputs_of(test), labels_of(test, targets)
    started = time.time()
    predictions = model.predict(test_x, batch_size=BATCH, verbose=1)
    predict_seconds = time.time() - started
    ridge = ridge_predictions(splits["train"], train_y, test)
    train_mean = {k: float(np.mean(v)) for k, v in train_y.items()}
    metrics = {
        "test_molecules": int(len(test_y[targets[0]])),
        "mae": mae_table(predictions, test_y, targets),
        "baselines": {
            "training_mean": mae_table(
                {k: np.full_like(v, train_mean[k]) for k, v in test_y.items()},
                test_y,
                targets,
            ),
            "ridge_on_atom_counts": mae_table(ridge, test_y, targets),
            "paper": {k: v for k, v in PAPER_MAE_MEV.items() if k in targets},
        },
        "rotation_mean_abs_change": rotation_check(model, test_x, targets),
        "smiles_geometry": smiles_check(model, test, targets, predictions),
        "predict_seconds_per_molecule": predict_seconds / len(test_y[targets[0]]),
    }
    compute_path = run_dir / "compute.json"
    compute = json.loads(compute_path.read_text()) if compute_path.exists() else {}
    # A run started from the shipped preset (its directory was lost) adds the
    # epochs, steps and hours that made that preset.
    inherited = inherited_of(run_dir)
    totals = lineage_totals(run_dir, recipe["steps_per_keras_epoch"])
    steps = totals["steps"]
    metrics["training"] = {
        "keras_epochs": totals["epochs"],
        "steps": steps,
        "passes_over_training_split": steps * BATCH / len(train_y[targets[0]]),
        "wall_hours": totals["wall_seconds"] / 3600,
        "cpu_cores": 2,
        "machine": compute.get("machine", "CPU"),
        "continued_from": inherited.get("from"),
        "inherited_steps": inherited.get("steps", 0),
        "best_val_loss": best_val_loss,
    }
    hours_before = inherited.get("wall_seconds", 0) / 3600
    init_from = PRESETS[preset]["init_from"]
    source = source_metrics(init_from)
    if source:
        # The backbone it started from took the source preset's hours to train.
        backbone_hours = float(source["training"]["wall_hours"])
        metrics["training"]["backbone_from"] = {
            "preset": init_from,
            "wall_hours": backbone_hours,
        }
        hours_before += backbone_hours
    if "H" in targets and metrics["mae"]["H"] > GOAL_H_MEV:
        if source and source["training"].get("projection"):
            metrics["training"]["projection"] = project_fine_tune_hours(
                source["training"]["projection"],
                source["mae"]["H"],
                metrics["mae"]["H"],
                own_hours=metrics["training"]["wall_hours"],
            )
        else:
            projection = project_hours_to_goal(
                history,
                "H",
                GOAL_H_MEV,
                hours_before,
                key=validation_mae_key(targets, "H"),
            )
            # Recorded when the run continued the shipped preset, so a re-export
            # (after this one replaced the shipped metrics) projects the same way.
            continued_end = inherited.get("continued_end")
            if (
                continued_end
                and continued_end["target"] == "H"
                and "latest_validation_mae" in projection
                and projection["hours_so_far"] > continued_end["hours"]
            ):
                schedule = learning_rate_schedule(
                    preset, len(train_y[targets[0]]) // BATCH
                )
                ends = cycle_end_points(
                    history,
                    validation_mae_key(targets, "H"),
                    "H",
                    schedule.cycle_ends,
                    inherited_steps=inherited.get("steps", 0),
                    steps_per_epoch=recipe["steps_per_keras_epoch"],
                    inherited_hours=hours_before,
                )
                projection = project_from_shipped(projection, continued_end, ends)
            metrics["training"]["projection"] = projection
    directory = ZOO / preset
    metadata = {
        "task": "QM9Regressor",
        "targets": {
            name: {"unit": _unit(name), "report_unit": _report_unit(name)}
            for name in targets
        },
        "inputs": {
            "positions": {"shape": [None, 29, 3], "units": "Angstrom"},
            "charges": {"shape": [None, 29], "units": "nuclear charge, 0 = padding"},
        },
        "training_data": {
            "name": "QM9 (Ramakrishnan et al. 2014, CC0), DFT geometries, "
            "via the qm9pack wheel",
            "split": "TFDS qm9/dimenet: 110,000 / 10,000 / 10,831",
        },
        "label_mean": mean,
        "label_std": std,
        "atom_reference": reference,
        "metrics": {"test_mae": metrics["mae"]},
        "recipe": recipe,
        "headline": f"H MAE {metrics['mae'].get('H', float('nan')):.1f} meV",
    }
    sample = {k: v[:4] for k, v in test_x.items()}
    save_preset(model, directory, "", metadata, sample_input=sample)
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    reference_rows = _sample_rows(len(test_y[targets[0]]), 8, 2).tolist()
    reference = model.predict(
        {k: v[reference_rows] for k, v in test_x.items()}, verbose=0
    )
    (directory / "reference.json").write_text(
        json.dumps(
            {
                "split": "test",
                "config": "dimenet",
                "rows": reference_rows,
                "predictions": {k: v.tolist() for k, v in reference.items()},
                # keras-hub's preset tests use 0.01; float32 reductions may round
                # differently on other CPUs (relative to each target's scale).
                "rtol": 1e-3,
            },
            indent=1,
        )
        + "\n"
    )
    draw_learning_curve(history, targets, directory / "training_curves.png")
    write_card(directory, preset, metrics, recipe, PRESETS[preset])
    stored = json.loads((directory / "metadata.json").read_text())
    print(json.dumps(stored["keras_sphere"]["sha256"], indent=2))
    print(json.dumps(metrics["mae"], indent=2))


def _unit(name):
    from keras_sphere.models.qm9 import TARGETS

    return TARGETS[name]["unit"]


def _report_unit(name):
    from keras_sphere.models.qm9 import TARGETS

    return TARGETS[name]["report_unit"]
