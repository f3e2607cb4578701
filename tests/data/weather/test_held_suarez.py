"""Tests of the Held-Suarez simulator, on a toy configuration (T21, 6 sigma levels).

Every simulation here shares one configuration, so the compiled 6-hour step is
built once per session (about 10 s on a busy 2-core machine) and each run after
that costs about a second. A 1-day spin-up from an isothermal 288 K atmosphere at
rest is far from the Held-Suarez climate: the bounds below hold for such a young
atmosphere (temperatures near 288 K, weak winds) and for a spun-up one alike.
"""

import sys

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("zarr")
pytest.importorskip("dinosaur")

from keras_sphere.data.weather import held_suarez  # noqa: E402
from keras_sphere.data.weather.held_suarez import DAYS_PER_YEAR  # noqa: E402
from keras_sphere.data.weather.held_suarez import EPOCH  # noqa: E402
from keras_sphere.data.weather.held_suarez import simulate_held_suarez  # noqa: E402
from keras_sphere.data.weather.held_suarez import simulation_wall_hours  # noqa: E402

SMALL = dict(
    truncation=21,
    n_sigma_levels=6,
    levels=(500, 850, 1000),
    spinup_days=1.0,
    checkpoint_days=0.5,
    verbose=False,
)
N_TIMES = 6  # 1.5 simulated days, 6-hourly


def years(n_times):
    return n_times / 4 / DAYS_PER_YEAR


VARIABLES = [
    "geopotential",
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
    "surface_pressure",
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(path, dataset) of one uninterrupted run, loaded into memory."""
    path = tmp_path_factory.mktemp("held_suarez") / "reference.zarr"
    return path, simulate_held_suarez(path, years=years(N_TIMES), **SMALL).load()


def assert_same_data(dataset, expected):
    # Bitwise: every chunk runs the same compiled 6-hour step on the same float32
    # state, and the checkpoint stores that state exactly, so resuming or
    # re-chunking changes nothing.
    for name in VARIABLES:
        np.testing.assert_array_equal(dataset[name].values, expected[name].values)
    np.testing.assert_array_equal(dataset.time.values, expected.time.values)


def test_layout_orientation_and_attributes(reference):
    _, dataset = reference
    assert dict(dataset.sizes) == dict(time=6, level=3, latitude=32, longitude=64)
    for name in VARIABLES:
        expected = ("time", "level", "latitude", "longitude")
        if name == "surface_pressure":
            expected = ("time", "latitude", "longitude")
        assert dataset[name].dims == expected, name
        assert dataset[name].dtype == np.float32, name
        assert dataset[name].attrs["units"], name
        assert dataset[name].attrs["long_name"], name
    latitude, longitude = dataset.latitude.values, dataset.longitude.values
    assert np.all(np.diff(latitude) < 0) and 0 < latitude[0] < 90  # north first
    nodes, _ = np.polynomial.legendre.leggauss(32)  # Gaussian grid, no poles
    np.testing.assert_allclose(np.sin(np.radians(latitude)), nodes[::-1], atol=1e-12)
    assert longitude[0] == 0.0
    np.testing.assert_allclose(np.diff(longitude), 360 / 64)
    assert dataset.level.values.tolist() == [500, 850, 1000]
    assert np.issubdtype(dataset.level.dtype, np.integer)
    times = dataset.time.values
    assert times[0] == EPOCH
    assert np.all(np.diff(times) == np.timedelta64(6, "h"))
    attrs = dataset.attrs
    assert attrs["generator"].startswith("dinosaur-dycore 1.")
    assert attrs["forcing"].startswith("Held-Suarez")
    assert attrs["truncation"] == 21 and attrs["seed"] == 0
    assert attrs["nodal_grid"].startswith("gaussian 32 x 64")
    assert len(attrs["sigma_levels"]) == 6 and attrs["time_step_minutes"] == 20
    assert attrs["spinup_days"] == 1.0
    assert attrs["extrapolation"] == held_suarez.EXTRAPOLATION_RULE
    assert "keras_sphere_version" in attrs


def test_values_are_physically_plausible(reference):
    _, dataset = reference
    for name in VARIABLES:
        assert np.isfinite(dataset[name].values).all(), name
    temperature = dataset.temperature.values
    assert 150 < temperature.min() and temperature.max() < 350
    z = dataset.geopotential
    # z500 is about 5.7e4 m^2 s^-2 in the initial 288 K isothermal atmosphere and
    # about 5.3e4 once spun up (data.md: mean z500 5443 m): 4.5e4 to 6e4 holds for
    # both. z850 = R T ln(1000/850) is about 1.3e4 for T near 288 K.
    assert 4.5e4 < z.sel(level=500).min() and z.sel(level=500).max() < 6e4
    assert 1.0e4 < z.sel(level=850).min() and z.sel(level=850).max() < 1.8e4
    assert (z.sel(level=500) > z.sel(level=850)).all()  # hydrostatic ordering
    assert (z.sel(level=850) > z.sel(level=1000)).all()
    for name in ("u_component_of_wind", "v_component_of_wind"):
        assert np.abs(dataset[name].values).max() < 100, name
    surface_pressure = dataset.surface_pressure.values
    assert 9e4 < surface_pressure.min() and surface_pressure.max() < 1.1e5


def test_resume_after_interruption_matches_one_run(reference, tmp_path, monkeypatch):
    path = tmp_path / "resumed.zarr"
    save = held_suarez._save_checkpoint
    calls = []

    def crash_on_fourth(*args):
        # Saves 1-2 end the spin-up chunks, 3 the first output chunk; die after the
        # second output chunk is written but before it is checkpointed.
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        save(*args)

    monkeypatch.setattr(held_suarez, "_save_checkpoint", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        simulate_held_suarez(path, years=years(N_TIMES), **SMALL)
    monkeypatch.setattr(held_suarez, "_save_checkpoint", save)
    assert xr.open_zarr(path).sizes["time"] == 4  # 2 of them not checkpointed
    resumed = simulate_held_suarez(path, years=years(N_TIMES), **SMALL)
    assert_same_data(resumed, reference[1])


def test_extending_in_two_calls_matches_one_run(reference, tmp_path):
    path = tmp_path / "extended.zarr"
    first = simulate_held_suarez(path, years=years(2), **SMALL)
    assert first.sizes["time"] == 2
    first_hours = simulation_wall_hours(path)
    assert 0 < first_hours < 1
    options = dict(SMALL, checkpoint_days=0.25)  # chunking does not matter
    extended = simulate_held_suarez(path, years=years(N_TIMES), **options)
    assert_same_data(extended, reference[1])
    # The wall time adds up over the calls that made the data.
    assert simulation_wall_hours(path) > first_hours
    assert np.isnan(simulation_wall_hours(tmp_path / "never_run.zarr"))
    again = simulate_held_suarez(path, years=years(3), **SMALL)  # stored: no run
    assert_same_data(again, reference[1].isel(time=slice(0, 3)))


def test_netcdf_output(reference, tmp_path):
    path = tmp_path / "run.nc"
    first = simulate_held_suarez(path, years=years(2), **SMALL)
    assert path.is_file() and not (tmp_path / "run.nc.partial.zarr").exists()
    assert first.attrs["truncation"] == 21
    first.close()
    extended = simulate_held_suarez(path, years=years(N_TIMES), **SMALL)
    assert_same_data(extended, reference[1])
    assert extended.temperature.dtype == np.float32
    extended.close()


def test_seed(reference, tmp_path):
    _, expected = reference
    other = simulate_held_suarez(tmp_path / "seed1.zarr", years=years(1), **SMALL)
    assert_same_data(other, expected.isel(time=slice(0, 1)))  # same seed, same data
    options = dict(SMALL, seed=1)
    different = simulate_held_suarez(tmp_path / "seed2.zarr", years=years(1), **options)
    difference = np.abs(different.surface_pressure - expected.surface_pressure[:1])
    assert float(difference.max()) > 10  # Pa; the bump sits elsewhere


def test_different_arguments_are_refused(reference):
    path, _ = reference
    with pytest.raises(ValueError, match=r"seed=0 \(asked: 1\)"):
        simulate_held_suarez(path, years=years(N_TIMES), **dict(SMALL, seed=1))
    with pytest.raises(ValueError, match=r"levels=\[500, 850, 1000\] \(asked"):
        simulate_held_suarez(path, years=years(1), **dict(SMALL, levels=(500, 850)))


def test_missing_checkpoint_stops_extension_only(reference, tmp_path):
    path = tmp_path / "copy.zarr"
    simulate_held_suarez(path, years=years(2), **SMALL)
    (tmp_path / "copy.zarr.checkpoint.npz").unlink()
    assert simulate_held_suarez(path, years=years(2), **SMALL).sizes["time"] == 2
    with pytest.raises(FileNotFoundError, match="checkpoint .* is missing"):
        simulate_held_suarez(path, years=years(3), **SMALL)


def test_missing_dinosaur_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dinosaur", None)
    with pytest.raises(ImportError, match=r'pip install "keras-sphere\[weather\]"'):
        simulate_held_suarez(tmp_path / "x.zarr", years=years(1), **SMALL)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(levels=(500.0, 850)), TypeError, "must be ints"),
        (dict(levels=()), ValueError, "non-empty"),
        (dict(levels=(500, 500)), ValueError, "distinct"),
        (dict(time_step_minutes=7), ValueError, "dividing the 6 h"),
        (dict(spinup_days=0.1), ValueError, "multiple of 6 h"),
        (dict(truncation=5), ValueError, "at least 10"),
        (dict(years=0.0), ValueError, "at least one 6-hourly state"),
    ],
)
def test_invalid_arguments(tmp_path, change, error, match):
    options = {**SMALL, "years": years(1), **change}
    with pytest.raises(error, match=match):
        simulate_held_suarez(tmp_path / "x.zarr", **options)
    assert not (tmp_path / "x.zarr").exists()
