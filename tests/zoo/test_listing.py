"""list_presets: the records as a dict, shown as a table (PresetListing)."""

import pytest

from keras_sphere import zoo
from keras_sphere.zoo.listing import COLUMNS
from keras_sphere.zoo.listing import PresetListing
from keras_sphere.zoo.presets import BUILTIN_PRESETS


def test_list_presets_is_a_dict_shown_as_a_table(capsys):
    listing = zoo.list_presets()
    assert isinstance(listing, dict) and set(listing) == set(BUILTIN_PRESETS)
    record = listing["cmb_1024"]
    assert record["task"] == "CMBClassifier" and record["parameters"] > 0
    lines = repr(listing).splitlines()
    assert lines[0].split("  ")[0] == "name" and "headline metric" in lines[0]
    row = next(line for line in lines if line.startswith("cmb_1024"))
    for cell in ("CMBClassifier", "2048 x 2048", "maps (uK)", "params", "trained"):
        assert cell in row
    assert "preset_test_accuracy 0.9775" in row
    print(listing)  # a script prints the same table
    assert capsys.readouterr().out.rstrip("\n") == repr(listing)


def test_untrained_preset_is_listed_with_its_status(monkeypatch):
    monkeypatch.setitem(
        BUILTIN_PRESETS,
        "untrained_test",
        {"task": "QM9Regressor", "description": "not trained yet", "sha256": {}},
    )
    listing = zoo.list_presets()
    assert listing["untrained_test"]["status"].startswith("not trained")
    row = next(line for line in repr(listing).splitlines() if "untrained_test" in line)
    assert row.split() == [
        "untrained_test",
        "QM9Regressor",
        *["-"] * 4,
        *"not trained: run the recipe in zoo/untrained_test/".split(),
    ]


def test_rows_summarise_any_metadata():
    listing = PresetListing(
        {
            "a": {
                "task": "T",
                "parameters": 1234567,
                "grid": [32, 64],
                "inputs": ["positions", "charges"],
                "metrics": {
                    "first": {"mean": 0.91234, "std": 0.0123},
                    "second": {"U0": {"mae_meV": 12.345}},
                },
                "headline_metric": "second",
            },
            "b": {"task": "T", "metrics": {"accuracy": {"mean": 0.5}}},
        }
    )
    assert listing.rows() == [
        (
            "a",
            "T",
            "32 x 64",
            "positions, charges",
            "1,234,567 params",
            "second U0 mae_meV 12.35",
            "trained",
        ),
        ("b", "T", "-", "-", "-", "accuracy 0.5", "trained"),
    ]
    assert len(listing.rows()[0]) == len(COLUMNS)
    spread = PresetListing(
        {"c": {"metrics": {"acc": {"mean": 0.97417, "std": 0.0038}}}}
    )
    assert spread.rows()[0][5] == "acc 0.9742 ± 0.0038"
    assert repr(PresetListing()) == "No presets."


def test_ipython_shows_the_table():
    pretty = pytest.importorskip("IPython.lib.pretty")
    listing = zoo.list_presets()
    assert pretty.pretty(listing) == repr(listing)
