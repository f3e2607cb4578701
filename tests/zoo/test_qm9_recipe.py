"""The qm9 recipe's restart from the shipped preset when its run directory is lost."""

import json

import keras
import numpy as np
import pytest

import keras_sphere
from keras_sphere.training.loop import inherited_of
from keras_sphere.zoo.presets import builtin_directory


@pytest.fixture
def recipe(recipe_modules):
    return recipe_modules("qm9", "train")


def test_a_lost_run_continues_from_the_shipped_preset(recipe, tmp_path):
    from keras_sphere.models.qm9 import TARGET_NAMES

    shipped = json.loads((builtin_directory("qm9") / "metrics.json").read_text())
    # The recipe's label model may differ from the shipped preset's: an atom
    # reference adds no weights, so the shipped weights still fit.
    model = recipe.build_model(TARGET_NAMES, None, None, {"H": [-0.6] * 5})
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    before = [np.array(w) for w in model.get_weights()]

    recipe._continue_shipped_preset(model, "qm9", tmp_path)

    reference = keras_sphere.zoo.load("qm9")
    changed = False
    for ours, theirs, initial in zip(
        model.get_weights(), reference.get_weights(), before, strict=True
    ):
        np.testing.assert_array_equal(ours, theirs)
        changed |= not np.array_equal(ours, initial)
    assert changed  # the shipped weights replaced the fresh initialisation
    steps = shipped["training"]["steps"]
    assert int(model.optimizer.iterations.value) == steps  # the schedule goes on
    inherited = inherited_of(tmp_path)
    assert inherited["steps"] == steps
    assert inherited["keras_epochs"] == shipped["training"]["keras_epochs"]
    assert inherited["wall_seconds"] == pytest.approx(
        3600 * shipped["training"]["wall_hours"]
    )
    # Where the shipped run ended, for the export's projection (kept in the run
    # directory, since the export replaces the shipped metrics).
    end = shipped["training"]["projection"]
    assert inherited["continued_end"] == {
        "target": "H",
        "hours": pytest.approx(end["hours_so_far"]),
        "validation_mae": pytest.approx(end["latest_validation_mae"]),
    }
    assert inherited_of(tmp_path / "elsewhere") == {}


def test_a_run_of_the_other_label_model_is_moved_aside(recipe, tmp_path):
    run_dir = tmp_path / "qm9"
    run_dir.mkdir()
    (run_dir / "backup").mkdir()
    (run_dir / "recipe.json").write_text(json.dumps({"atom_reference": False}))
    recipe._archive_other_label_model(run_dir)
    assert recipe.ATOM_REFERENCE  # the recipe predicts residuals now
    assert not run_dir.exists()
    assert (tmp_path / "qm9-atom-reference-False" / "backup").is_dir()
    run_dir.mkdir()  # a run of the current label model stays
    (run_dir / "recipe.json").write_text(json.dumps({"atom_reference": True}))
    recipe._archive_other_label_model(run_dir)
    assert run_dir.exists()


def test_label_model_standardises_residuals_around_the_atom_sums(recipe):
    from keras_sphere.models.qm9 import atom_counts

    rng = np.random.default_rng(0)
    sizes = rng.integers(3, 21, size=300)
    charges = np.where(
        np.arange(29) < sizes[:, None], rng.choice([1, 6, 7, 8, 9], (300, 29)), 0
    )
    noise = np.random.default_rng(1).normal(size=300) * 0.01
    h = atom_counts(charges) @ [-0.6, -2.4, -1.9, -1.6, -1.1] + 0.3 + noise
    columns = {"charges": charges, "H_atomization": h, "mu": 1.0 + noise}
    mean, std, values = recipe.label_model(columns, ("H", "mu"))
    assert std["H"] == pytest.approx(0.01, rel=0.15)  # the noise, not the sums
    assert mean["H"] == pytest.approx(0.3, abs=0.01)  # the intercept
    np.testing.assert_allclose(values["H"], [-0.6, -2.4, -1.9, -1.6, -1.1], atol=3e-3)
    mean, std, values = recipe.label_model(columns, ("H",), atom_reference=False)
    assert values is None and std["H"] == pytest.approx(np.std(h))


def test_projection_extrapolates_the_recent_power_law(recipe_modules):
    from keras_sphere.models.qm9 import TARGETS

    export = recipe_modules("qm9", "export")
    to_hartree = 1 / TARGETS["H"]["report_scale"]
    # Validation H MAE = 400 meV * hours**-0.5 over the last ten of twenty
    # half-hour epochs after 1 inherited hour (the first ten fall faster, and are
    # not fitted): 25 meV is reached at (400 / 25)**2 = 256 hours.
    hours = 1 + 0.5 * np.arange(1, 21)
    history = [
        {
            "seconds": 1800.0,
            "val_H_mae": 400 * h ** (-0.5 if h > 6 else -2.0) * to_hartree,
            "val_loss": 1.0,
        }
        for h in hours
    ]
    projection = export.project_hours_to_goal(history, "H", 25.0, inherited_hours=1)
    assert projection["fitted_epochs"] == 10
    assert projection["slope"] == pytest.approx(-0.5)
    assert projection["hours_so_far"] == pytest.approx(11.0)
    assert projection["hours_to_goal"] == pytest.approx(256.0)
    # A short history is fitted over its last MIN_PROJECTION_EPOCHS epochs.
    short = export.project_hours_to_goal(history[-8:], "H", 25.0, inherited_hours=7)
    assert short["fitted_epochs"] == export.MIN_PROJECTION_EPOCHS
    assert short["slope"] == pytest.approx(-0.5)
    # A curve that has stopped falling projects nothing.
    flat = [dict(row, val_H_mae=0.01) for row in history]
    assert export.project_hours_to_goal(flat, "H", 25.0)["hours_to_goal"] is None
    assert export.project_hours_to_goal(history[:2], "H", 25.0)["slope"] is None


def test_a_fine_tune_is_projected_through_its_source(recipe_modules):
    export = recipe_modules("qm9", "export")
    # Source: 100 meV after 4 h, MAE proportional to hours**-0.5. A fine-tune 20%
    # below it (ratio 0.8) reaches 25 meV when the source reaches 31.25 meV:
    # 4 * (100 / 31.25)**2 = 40.96 h, plus the fine-tune's own half hour.
    source = {
        "target": "H",
        "goal": 25.0,
        "fitted_epochs": 6,
        "slope": -0.5,
        "latest_validation_mae": 100.0,
        "hours_so_far": 4.0,
        "hours_to_goal": 64.0,
    }
    projection = export.project_fine_tune_hours(source, 100.0, 80.0, own_hours=0.5)
    assert projection["ratio_to_source"] == pytest.approx(0.8)
    assert projection["source_goal"] == pytest.approx(31.25)
    assert projection["hours_to_goal"] == pytest.approx(40.96 + 0.5)
    assert projection["hours_so_far"] == pytest.approx(4.5)
    # A source whose curve does not fall gives no projection.
    flat = dict(source, slope=0.01, hours_to_goal=None)
    assert export.project_fine_tune_hours(flat, 100.0, 80.0, own_hours=0.5) is None


def test_a_continued_run_is_projected_from_the_shipped_preset(recipe_modules):
    export, card = recipe_modules("qm9", "export", "card")
    # Shipped: 50 meV after 9 h; this run's end: 40 meV after 12 h. Within the run
    # the curve fell steeply (a restart's recovery); the projection takes the two
    # ends: slope ln(0.8) / ln(4 / 3) = -0.776, 25 meV at 12 * (25/40)**(1/slope).
    within = {
        "target": "H",
        "goal": 25.0,
        "fitted_epochs": 12,
        "slope": -1.9,
        "latest_validation_mae": 40.0,
        "hours_so_far": 12.0,
        "hours_to_goal": 15.0,
    }
    shipped = {"target": "H", "hours": 9.0, "validation_mae": 50.0}
    projection = export.project_from_shipped(within, shipped, [(12.0, 40.0)])
    slope = np.log(0.8) / np.log(12 / 9)
    assert projection["slope"] == pytest.approx(slope)
    assert projection["hours_to_goal"] == pytest.approx(12 * (25 / 40) ** (1 / slope))
    assert projection["within_run"] == within
    text = "".join(card._projection_lines(projection))
    assert "50.0 meV after 9.0 h (the preset this run continued)" in text
    assert "40.0 meV after 12.0 h" in text
    assert f"about {projection['hours_to_goal']:,.0f} h" in text
    # With no finished cycle in the run, its last epoch stands in for one.
    assert export.project_from_shipped(within, shipped, [])["slope"] == pytest.approx(
        slope
    )
    # qm9_h projects through such a source too.
    fine_tune = export.project_fine_tune_hours(projection, 40.0, 36.0, own_hours=0.5)
    assert "through the ends of its learning-rate cycles" in "".join(
        card._projection_lines(fine_tune)
    )
    # A run that got worse gives no estimate.
    worse = export.project_from_shipped(within, shipped, [(12.0, 60.0)])
    assert worse["hours_to_goal"] is None
    assert "no estimate" in "".join(card._projection_lines(worse))


def test_the_projection_fits_only_the_ends_of_learning_rate_cycles(recipe_modules):
    from keras_sphere.models.qm9 import TARGETS

    export, card = recipe_modules("qm9", "export", "card")
    to_hartree = 1 / TARGETS["H"]["report_scale"]
    # A run of 12 epochs of 100 steps, half an hour each, after 1,000 inherited
    # steps and 9 hours: cycles end at steps 1,000 (the shipped preset), 1,600
    # (epoch 6) and 2,150 (epoch 11: its last 50 steps are in epoch 12), and
    # 3,000 (not reached). On the cycle ends the MAE is 60 * hours**-0.5; the
    # epochs in between are thrown back by the restarts (100 meV), and would
    # steepen any fit over epochs.
    cycle_end_epochs = {6, 11}
    history = []
    for epoch in range(1, 13):
        hours = 9 + 0.5 * epoch
        mae = 60 * hours**-0.5 if epoch in cycle_end_epochs else 100.0
        history.append({"seconds": 1800.0, "val_H_mae": mae * to_hartree})
    points = export.cycle_end_points(
        history,
        "val_H_mae",
        "H",
        cycle_ends=(1000, 1600, 2150, 3000),
        inherited_steps=1000,
        steps_per_epoch=100,
        inherited_hours=9.0,
    )
    assert [h for h, _ in points] == pytest.approx([12.0, 14.5])
    assert [m for _, m in points] == pytest.approx([60 * 12**-0.5, 60 * 14.5**-0.5])
    within = export.project_hours_to_goal(history, "H", 5.0, 9.0)
    shipped = {"target": "H", "hours": 9.0, "validation_mae": 60 * 9**-0.5}
    projection = export.project_from_shipped(within, shipped, points)
    assert projection["slope"] == pytest.approx(-0.5)
    # From the last cycle end: 60 * h**-0.5 = 5 at h = 144.
    assert projection["hours_to_goal"] == pytest.approx(144.0)
    assert projection["hours_at_latest"] == pytest.approx(14.5)
    assert projection["hours_so_far"] == pytest.approx(15.0)
    text = "".join(card._projection_lines(projection))
    assert "least squares, slope -0.50" in text
    assert "after 12.0 h and" in text and "after 14.5 h (" in text


def test_each_preset_has_its_schedule_and_the_card_describes_it(recipe_modules):
    recipe, card = recipe_modules("qm9", "recipe", "card")
    scratch, fine_tune = recipe.recipe_record("qm9"), recipe.recipe_record("qm9_h")
    # qm9_h fine-tunes qm9: a lower peak, reached at once, decaying sooner.
    assert fine_tune["peak_learning_rate"] < scratch["peak_learning_rate"]
    assert fine_tune["warmup_steps"] == 0 < scratch["warmup_steps"]
    assert fine_tune["planned_epochs"] < scratch["planned_epochs"]
    assert card._schedule_text(scratch) == (
        "linear warm-up over 1000 steps to 0.0003, cosine decay planned over 4 "
        "passes, then a warm restart at 0.5 of the peak (0.00015) with cosine "
        "decay over 1.75 passes, then a warm restart at 0.167 of the peak (5e-05) "
        "with cosine decay over 0.75 passes (the first restart was planned over "
        "1.5 passes and lengthened to 1.75 at step 32,000, where the rate rose from "
        "0.90e-4 to 1.04e-4, so that the run reaches 12 hours; the second was "
        "added after the first had ended, at step 39,500)"
    )
    assert card._schedule_text(fine_tune) == (
        "learning rate 5e-05 from the first step (no warm-up), cosine decay planned "
        "over 0.3 passes"
    )
    # A run directory's recipe.json from before restarts existed reads as none.
    del scratch["restarts"], scratch["schedule_changes"]
    assert card._schedule_text(scratch).endswith("cosine decay planned over 4 passes")


def test_the_schedule_counts_passes_in_steps(recipe):
    steps_per_pass = 110_000 // 16
    schedule = recipe.learning_rate_schedule("qm9", steps_per_pass)
    assert (schedule.total_steps, schedule.warmup_steps) == (27_500, 1000)
    assert schedule.restarts == ((12_031, 0.5), (5_156, pytest.approx(1 / 6)))
    assert schedule.cycle_ends == (27_500, 39_531, 44_687)
    # The first restart begins at half the peak, where the first cycle had
    # reached 0; the second at 5e-5 (qm9_h's fine-tuning rate).
    assert float(schedule(27_499)) < 1e-9
    assert float(schedule(27_500)) == pytest.approx(1.5e-4, rel=1e-6)
    assert float(schedule(39_530)) < 1e-9
    assert float(schedule(39_531)) == pytest.approx(5e-5, rel=1e-6)


def test_a_fine_tune_restarts_from_its_source_and_a_run_resumes(recipe, tmp_path):
    # qm9_h ships too, but a new qm9_h run starts from qm9's current weights.
    assert recipe.starting_point("qm9_h", tmp_path / "qm9_h") == "source"
    assert recipe.starting_point("qm9", tmp_path / "qm9") == "shipped"
    (tmp_path / "qm9_h" / "backup").mkdir(parents=True)
    assert recipe.starting_point("qm9_h", tmp_path / "qm9_h") == "resume"


def test_an_export_never_replaces_better_shipped_weights(recipe_modules, tmp_path):
    export = recipe_modules("qm9", "export")
    shipped = builtin_directory("qm9")
    recipe = json.loads((shipped / "metadata.json").read_text())["keras_sphere"][
        "recipe"
    ]
    to_beat = json.loads((shipped / "metrics.json").read_text())["training"][
        "best_val_loss"
    ]
    assert export.shipped_loss_to_beat(recipe, shipped) == to_beat
    export.check_beats_shipped(to_beat * 0.99, recipe, shipped)  # better: exports
    export.check_beats_shipped(to_beat, recipe, shipped)  # the same run, again
    with pytest.raises(SystemExit, match="--force"):
        export.check_beats_shipped(to_beat * 1.01, recipe, shipped)
    # Another validation sample or label model: the losses do not compare.
    other = {**recipe, "validation_molecules": recipe["validation_molecules"] + 1}
    assert export.shipped_loss_to_beat(other, shipped) is None
    export.check_beats_shipped(to_beat * 2, other, shipped)
    assert export.shipped_loss_to_beat(recipe, tmp_path) is None  # nothing shipped
