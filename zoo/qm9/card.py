"""The model card (README.md) of the qm9 and qm9_h presets, from metrics.json."""

from __future__ import annotations

import pathlib

GOAL_H_MEV = 25.0  # the goal on the test split


def _row(name, metrics, unit):
    base = metrics["baselines"]
    paper = base["paper"].get(name)
    return (
        f"| {name} | {unit} | **{metrics['mae'][name]:.4g}** | "
        f"{base['training_mean'][name]:.4g} | "
        f"{base['ridge_on_atom_counts'][name]:.4g} | "
        f"{'' if paper is None else paper} |"
    )


def _source_fit_text(projection) -> str:
    if projection.get("source_method") == "from_shipped":
        return "through the ends of its learning-rate cycles"
    return f"fitted to its last {projection['fitted_epochs']} epochs"


def _cycle_ends_text(points) -> str:
    """The cycle ends, (hours, MAE in meV) each, as the card's text: "50.4 meV
    after 9.1 h (the preset this run continued), 45.7 meV after 12.1 h and ..."."""
    texts = [f"{mae:.1f} meV after {hours:.1f} h" for hours, mae in points]
    texts[0] += " (the preset this run continued)"
    if len(texts) == 1:
        return texts[0]
    return ", ".join(texts[:-1]) + " and " + texts[-1]


def _from_shipped_lines(projection) -> list[str]:
    goal, target = projection["goal"], projection["target"]
    if projection["hours_to_goal"] is None:
        reach = "it does not fall, so it gives no estimate of the hours still needed"
    else:
        more = projection["hours_to_goal"] - projection["hours_so_far"]
        reach = (
            f"from the last, it reaches {goal:g} meV after about "
            f"{projection['hours_to_goal']:,.0f} h of training on this machine, "
            f"{more:,.0f} h more"
        )
    within = projection["within_run"]
    within_text = (
        f" (slope {within['slope']:.2f} over its last {within['fitted_epochs']} "
        f"epochs, {within['hours_to_goal']:,.0f} h in all)"
        if within.get("hours_to_goal")
        else ""
    )
    points = projection["cycle_ends"]
    fit = "least squares, " if len(points) > 2 else ""
    return [
        f"Projection: a power law (MAE proportional to hours^slope) through the "
        f"validation {target} MAE at the end of each learning-rate cycle, where "
        f"the rate has decayed to 0: {_cycle_ends_text(points)} ({fit}slope "
        f"{projection['slope']:.2f}); {reach}. A fit over the run's epochs "
        f"instead{within_text} would mix in the setback after each warm restart "
        "and the recovery from it. This assumes the rate between cycle ends goes "
        "on; the half-width model may level off, so read it as an order of "
        "magnitude.",
        "",
    ]


def _projection_lines(projection) -> list[str]:
    if not projection:
        return []
    if projection.get("method") == "through_source":
        more = projection["hours_to_goal"] - projection["hours_so_far"]
        return [
            f"Projection: this fine-tune's own curve is too short to extrapolate, "
            f"so it goes through its source's: its test {projection['target']} "
            f"MAE is {projection['ratio_to_source']:.2f} times its source's, so it "
            f"would reach {projection['goal']:g} meV once the source reaches "
            f"{projection['source_goal']:.1f} meV, which the source's power law "
            f"(slope {projection['slope']:.2f}, {_source_fit_text(projection)}) "
            "puts at about "
            f"{projection['hours_to_goal']:,.0f} h of training in all, "
            f"{more:,.0f} h more. This assumes the ratio holds and the source's "
            "recent rate of improvement goes on: read it as an order of magnitude.",
            "",
        ]
    if projection.get("method") == "from_shipped":
        return _from_shipped_lines(projection)
    fitted = (
        f"a power law (MAE proportional to hours^slope) fitted to the validation "
        f"{projection['target']} MAE of the last {projection['fitted_epochs']} epochs"
    )
    if projection["hours_to_goal"] is None:
        return [
            f"Projection: {fitted} does not fall (slope "
            f"{projection['slope']:+.2f}), so it gives no estimate of the hours "
            "still needed.",
            "",
        ]
    more = projection["hours_to_goal"] - projection["hours_so_far"]
    return [
        f"Projection: {fitted} (slope {projection['slope']:.2f}; now "
        f"{projection['latest_validation_mae']:.0f} meV on the validation sample "
        f"after {projection['hours_so_far']:.1f} h) reaches "
        f"{projection['goal']:g} meV after about "
        f"{projection['hours_to_goal']:,.0f} h of training on this machine, "
        f"{more:,.0f} h more. This assumes the recent rate of improvement goes "
        "on; it may not: the cosine schedule's falling learning rate speeds the "
        "fall for a while (and steepens the fit), and the half-width model may "
        "level off, so read it as an order of magnitude.",
        "",
    ]


def write_card(directory: pathlib.Path, preset, metrics, recipe, spec) -> None:
    from keras_sphere.models.qm9 import TARGETS

    targets = list(metrics["mae"])
    training = metrics["training"]
    h = metrics["mae"].get("H")
    smiles = metrics["smiles_geometry"]
    title = "all 12 targets from one backbone" if len(targets) > 1 else "H only"
    lines = [
        f"# {preset}: QM9 molecular properties ({title})",
        "",
        "Predicts QM9 properties (B3LYP/6-31G(2df,p)) of small organic molecules of "
        "H, C, N, O and F (up to 29 atoms) from their 3D geometry, with the "
        'spin-spherical CNN of "Scaling Spherical CNNs" (Esteves et al., ICML '
        "2023) at half the paper's widths and resolutions. Trained and scored on "
        "**real QM9 with its DFT geometries** and the standard DimeNet split, so "
        "the test MAEs are comparable with the literature; **it is trained far "
        f"less than the paper** ({training['passes_over_training_split']:.2f} "
        "passes over the training split against 2000 epochs), and its errors are "
        "correspondingly larger.",
        "",
        "```python",
        "import keras_sphere",
        "from keras_sphere.data import qm9",
        "",
        f'model = keras_sphere.zoo.load("{preset}")',
        'positions, charges = qm9.from_smiles("CCO")  # or from_xyz, from_atoms',
        "properties = model.predict((positions, charges))  # dict, QM9 units",
        "```",
        "",
        "## Training data",
        "- QM9 (Ramakrishnan et al., Scientific Data 1, 140022, 2014; CC0): the "
        "130,831 characterized molecules with their DFT geometries, read from the "
        "`qm9pack` wheel by `keras_sphere.data.qm9` in the TFDS `qm9` schema.",
        "- Split: TFDS `qm9/dimenet` (seed 42): 110,000 train / 10,000 validation / "
        "10,831 test, id for id. The best weights are picked by the loss on the "
        f"{recipe['validation_molecules']} validation molecules ("
        f"{recipe.get('validation_sample', 'the first by QM9 index')}); the test "
        "split is used only for this card.",
        "- Labels: U0, U, H and G are atomization energies (QM9's atom reference "
        "energies subtracted). "
        + (
            "Each target is predicted as a sum of per-element values over the "
            "molecule's atoms (ridge regression on the counts of H, C, N, O, F, "
            "fitted on the training split: the 'ridge on atom counts' baseline "
            "below) plus the network's residual; the values and the residuals' "
            "means and standard deviations are stored in the preset's config."
            if recipe.get("atom_reference")
            else "Label means and standard deviations come from the training "
            "split and are stored in the preset's config."
        ),
        "",
        "## Inputs and outputs",
        "- `positions` float32 (n, 29, 3) in Angstrom and `charges` int32 (n, 29) "
        "(nuclear charges; 0 pads), as made by `keras_sphere.data.qm9.load`, "
        "`from_xyz`, `from_atoms` or `from_smiles`. `predict` refuses NaN positions "
        "and elements other than H, C, N, O, F, naming the molecules.",
        "- Output: a dict target -> (n,) in QM9 units: "
        + ", ".join(f"{t} [{TARGETS[t]['unit']}]" for t in targets)
        + ".",
        "",
        "## Architecture",
        f"Per atom: a {recipe['resolutions'][0]} x {recipe['resolutions'][0]} "
        "spherical signal of its neighbours (10 channels: 2 powers x 5 atom types) "
        "-> spin-spherical conv block (spins 0 -> (0, 1)) -> 4 residual blocks with "
        f"spectral pooling, resolutions {tuple(recipe['resolutions'])}, widths "
        f"{tuple(recipe['widths'])}, localized filters "
        f"{tuple(recipe['num_filter_params'])} -> invariant readout -> per target a "
        "DeepSets or transformer tail (width "
        f"{recipe['tail_width']}) with the anchor's per-target aggregation. Only the "
        f"real atoms are computed ({recipe['atoms_per_molecule']:g} slots per "
        "molecule per batch).",
        "",
        "## Recipe",
        f"`python zoo/qm9/train.py train --preset {preset}` (resumes; run it again "
        f"to continue), then `python zoo/qm9/train.py export --preset {preset}`. "
        f"Adam, batch {recipe['batch']}, "
        + _schedule_text(recipe)
        + "; L1 on standardised "
        "labels; random rotations (O(3)) of every training molecule; seed "
        f"{recipe['seed']}."
        + (
            f" Starts from the `{spec['init_from']}` run's backbone and tails."
            if spec.get("init_from")
            else ""
        ),
        "",
        "## Compute",
        f"- {training['steps']:,} steps ({training['passes_over_training_split']:.2f} "
        f"passes over the training split) in {training['wall_hours']:.1f} h wall "
        f"time on {training['cpu_cores']} CPU cores ({training['machine']}), about "
        f"{training['wall_hours'] * training['cpu_cores']:.1f} CPU hours.",
        *(
            [
                f"- The first {training['inherited_steps']:,} of these steps are "
                f"those of the earlier preset, {training['continued_from']}: "
                "this run started from its weights and schedule step with fresh "
                "Adam moments (its run directory was lost, or trained another "
                "label model); the learning curve shows the later steps only."
            ]
            if training.get("continued_from")
            else []
        ),
        *(
            [
                f"- Before these, {training['backbone_from']['wall_hours']:.1f} h of "
                f"`{training['backbone_from']['preset']}` training made the backbone "
                "this preset started from (the projection below counts them)."
            ]
            if training.get("backbone_from")
            else []
        ),
        f"- Inference: {1000 * metrics['predict_seconds_per_molecule']:.0f} ms per "
        "molecule on the same CPU (batches of 16).",
        "",
        f"## Held-out metrics: test-split MAE ({metrics['test_molecules']:,} "
        "molecules)",
        "",
        "| target | unit | this preset | training mean | ridge on atom counts | "
        "paper |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_row(t, metrics, TARGETS[t]["report_unit"]) for t in targets]
    lines += [
        "",
        "Baselines on the same split: (a) the training-split mean; (b) ridge "
        "regression (alpha 1e-3, closed form, under a second) on the counts of H, "
        "C, N, O, F; (c) the paper's figure where we have one (H: 5.69 meV, default "
        "config, 2000 epochs on 8 V100s; its other per-target numbers were not "
        "available to us).",
        "",
    ]
    behind = [
        t
        for t in targets
        if metrics["baselines"]["ridge_on_atom_counts"][t] < metrics["mae"][t]
    ]
    if behind:
        lines += [
            "Still behind ridge regression on atom counts: "
            + ", ".join(behind)
            + ". Those targets are dominated by a sum of per-atom contributions, "
            "which the network has not yet learned this early in training.",
            "",
        ]
    if h is not None:
        met = "met" if h <= GOAL_H_MEV else "not met yet"
        lines += [
            f"Goal H MAE <= {GOAL_H_MEV:g} meV: **{met}** ({h:.1f} meV). The learning "
            "curve is in `training_curves.png`; training continues in later "
            "sessions from the run directory.",
            "",
        ]
        lines += _projection_lines(training.get("projection"))
    lines += [
        "## Checks",
        "- Rotation invariance: mean |change| of predictions under a random "
        f"rotation of {256} test molecules: "
        + ", ".join(
            f"{t} {v:.3g} {TARGETS[t]['report_unit']}"
            for t, v in metrics["rotation_mean_abs_change"].items()
        )
        + " (the sampling of the atom signals on the grid is not exactly "
        "invariant).",
        f"- Geometries from SMILES (RDKit ETKDG + MMFF94) instead of DFT, on "
        f"{smiles['molecules']} test molecules: MAE "
        + ", ".join(
            f"{t} {smiles['mae_rdkit_geometry'][t]:.4g} (DFT geometry "
            f"{smiles['mae_dft_geometry'][t]:.4g})"
            for t in targets
            if t in ("H", "homo", "gap", "mu")
        )
        + ". The difference is the extra error of the SMILES path.",
        "",
        "## Limitations",
        "- Only H, C, N, O, F and at most 29 atoms (QM9's chemistry); neutral, "
        "ground-state, gas-phase molecules at B3LYP level.",
        "- Undertrained relative to the paper (see Compute).",
        "",
        "## Citation",
        "- R. Ramakrishnan, P. O. Dral, M. Rupp, O. A. von Lilienfeld, Quantum "
        "chemistry structures and properties of 134 kilo molecules, Scientific "
        "Data 1, 140022 (2014).",
        "- C. Esteves, J.-J. Slotine, A. Makadia, Scaling Spherical CNNs, ICML 2023.",
        "",
    ]
    (directory / "README.md").write_text("\n".join(lines))


def _schedule_text(recipe: dict) -> str:
    """The learning-rate schedule in words (a fine-tune has no warm-up)."""
    peak = f"{recipe['peak_learning_rate']:g}"
    warmup = (
        f"linear warm-up over {recipe['warmup_steps']} steps to {peak}"
        if recipe["warmup_steps"]
        else f"learning rate {peak} from the first step (no warm-up)"
    )
    restarts = "".join(
        f", then a warm restart at {scale:.3g} of the peak "
        f"({scale * recipe['peak_learning_rate']:.2g}) with cosine decay over "
        f"{passes:g} passes"
        for passes, scale in recipe.get("restarts", ())
    )
    changes = (
        f" ({recipe['schedule_changes']})" if recipe.get("schedule_changes") else ""
    )
    return (
        f"{warmup}, cosine decay planned over {recipe['planned_epochs']:g} passes"
        f"{restarts}{changes}"
    )
