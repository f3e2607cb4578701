"""The weather examples run end to end: real data, and the weather presets."""

import importlib.util
import math
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.large
def test_weather_real_data_example(tmp_path, capsys):
    module = load_example("weather_real_data")
    if not module.DATA.exists():
        pytest.skip(f"shared data not present: {module.DATA}")
    output = tmp_path / "forecast.png"
    rmse = module.main(["--epochs", "2", "--output", str(output)])
    assert set(rmse) == {"model", "persistence"}
    assert all(math.isfinite(v) and v > 0 for v in rmse.values())
    assert output.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "persistence" in printed and "degC" in printed


@pytest.mark.large
@pytest.mark.parametrize(
    "preset, leads",
    [
        ("weather_256", ["6 h", "24 h", "72 h", "120 h"]),
        ("weather_64", ["6 h", "24 h", "48 h", "72 h", "96 h", "120 h"]),
    ],
)
def test_weather_forecast_example_beats_persistence_from_the_shipped_state(
    tmp_path, preset, leads
):
    rows = load_example("weather_forecast").main(
        ["--preset", preset, "--output-dir", str(tmp_path)]
    )
    assert [row[0] for row in rows if row[1] == "model"] == leads
    by = {(row[0], row[1]): row[2:] for row in rows}
    # One state only: the model must beat persistence on z500 at 6 h and 1 day.
    for lead in ("6 h", "24 h"):
        assert by[lead, "model"][0] < by[lead, "persistence"][0]
    for name in ("weather_forecast_z500.png", "weather_forecast_rmse.png"):
        assert (tmp_path / name).stat().st_size > 10_000
