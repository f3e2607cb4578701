"""examples/weather_real_data.py runs end to end on the shared real-data file."""

import importlib.util
import math
import pathlib

import pytest

EXAMPLE = (
    pathlib.Path(__file__).resolve().parents[1] / "examples" / "weather_real_data.py"
)


@pytest.mark.large
def test_weather_real_data_example(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("weather_real_data", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.DATA.exists():
        pytest.skip(f"shared data not present: {module.DATA}")
    output = tmp_path / "forecast.png"
    rmse = module.main(["--epochs", "2", "--output", str(output)])
    assert set(rmse) == {"model", "persistence"}
    assert all(math.isfinite(v) and v > 0 for v in rmse.values())
    assert output.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "persistence" in printed and "degC" in printed
