"""Samples shipped in preset folders: written and read back exactly, clear errors."""

import numpy as np
import pytest

from keras_sphere.zoo import PresetError
from keras_sphere.zoo import load_sample
from keras_sphere.zoo.samples import write_sample

xarray = pytest.importorskip("xarray")


def weather_states(times: int = 3) -> "xarray.Dataset":
    rng = np.random.default_rng(0)
    time = np.datetime64("2000-03-01T00") + np.arange(times) * np.timedelta64(6, "h")
    shape = (times, 2, 4, 4)
    return xarray.Dataset(
        {
            "geopotential": (
                ("time", "level", "latitude", "longitude"),
                rng.normal(size=shape).astype(np.float32) * 5e4,
                {"units": "m2 s-2"},
            ),
        },
        coords={
            "time": time,
            "level": [500, 850],
            "latitude": [90.0, 30.0, -30.0, -90.0],
            "longitude": [0.0, 90.0, 180.0, 270.0],
        },
        attrs={"title": "test"},
    )


@pytest.fixture
def preset_dir(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # what makes a folder a preset
    return tmp_path


def test_states_and_climatology_round_trip(preset_dir):
    states = weather_states()
    climatology = states.mean("time")
    write_sample(states, preset_dir, "states")
    write_sample(climatology, preset_dir, "climatology")
    loaded = load_sample(str(preset_dir))
    xarray.testing.assert_identical(loaded, states)
    assert loaded["geopotential"].dtype == np.float32
    assert loaded["time"].dtype.kind == "M"
    xarray.testing.assert_identical(
        load_sample(str(preset_dir), "climatology"), climatology
    )


def test_missing_sample_and_unknown_part_say_what_exists(preset_dir):
    with pytest.raises(PresetError, match="ships no states sample"):
        load_sample(str(preset_dir))
    with pytest.raises(ValueError, match="'states', 'climatology'"):
        load_sample(str(preset_dir), "truth")
