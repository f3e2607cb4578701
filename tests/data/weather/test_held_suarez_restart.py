"""Starting a Held-Suarez run from another run's checkpoint (held_suarez_restart)."""

import shutil

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("zarr")
pytest.importorskip("dinosaur")

from keras_sphere.data.weather import held_suarez_restart as restart  # noqa: E402
from keras_sphere.data.weather.held_suarez import DAYS_PER_YEAR  # noqa: E402
from keras_sphere.data.weather.held_suarez import simulate_held_suarez  # noqa: E402

SMALL = dict(
    truncation=21,
    n_sigma_levels=6,
    levels=(500, 850),
    spinup_days=1.0,
    checkpoint_days=0.5,
    verbose=False,
)


def years(n_times):
    return n_times / 4 / DAYS_PER_YEAR


def coordinates(truncation, layers):
    import math

    from dinosaur import coordinate_systems
    from dinosaur import sigma_coordinates
    from dinosaur import spherical_harmonic

    grid = spherical_harmonic.Grid.construct(
        max_wavenumber=truncation, gaussian_nodes=math.ceil((3 * truncation + 1) / 4)
    )
    vertical = sigma_coordinates.SigmaCoordinates.equidistant(layers)
    return coordinate_systems.CoordinateSystem(grid, vertical)


@pytest.mark.parametrize("source, target", [(21, 31), (31, 21)])
def test_horizontal_move_matches_dinosaurs_spectral_interpolation(source, target):
    from dinosaur import coordinate_systems

    rng = np.random.default_rng(0)
    source_coords, target_coords = coordinates(source, 4), coordinates(target, 4)
    arrays = {
        "vorticity": rng.normal(size=(4, *source_coords.horizontal.modal_shape)),
        "log_surface_pressure": rng.normal(
            size=(1, *source_coords.horizontal.modal_shape)
        ),
    }
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}  # as dinosaur
    ours = restart.restart_arrays(arrays, target_coords.horizontal.modal_shape, 4)
    theirs = coordinate_systems.get_spectral_interpolate_fn(
        source_coords, target_coords
    )(arrays)
    for name in arrays:
        np.testing.assert_array_equal(ours[name], np.asarray(theirs[name]))


def test_vertical_move_is_linear_in_sigma_and_constant_outside():
    source, target = 6, 4
    sigma_source = (np.arange(source) + 0.5) / source
    sigma_target = (np.arange(target) + 0.5) / target
    weights = restart.sigma_interpolation(source, target)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-15)
    # A profile linear in sigma is reproduced between the outermost source
    # centres, and held constant beyond them.
    profile = 3.0 - 2.0 * sigma_source
    expected = 3.0 - 2.0 * np.clip(sigma_target, sigma_source[0], sigma_source[-1])
    np.testing.assert_allclose(weights @ profile, expected, atol=1e-14)
    arrays = {"temperature_variation": profile[:, None, None] * np.ones((6, 3, 2))}
    moved = restart.restart_arrays(arrays, (3, 2), target)["temperature_variation"]
    np.testing.assert_allclose(moved[:, 1, 1], expected, atol=1e-14)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A T21 run of 4 states, its checkpoint frozen, and the same run extended."""
    folder = tmp_path_factory.mktemp("restart")
    path = folder / "source.zarr"
    simulate_held_suarez(path, years=years(4), **SMALL)
    frozen = folder / "source_after_4.checkpoint.npz"
    shutil.copyfile(path.with_name(path.name + ".checkpoint.npz"), frozen)
    extended = simulate_held_suarez(path, years=years(6), **SMALL).load()
    return frozen, extended


def test_restart_at_the_same_resolution_continues_the_source_exactly(
    source_run, tmp_path
):
    frozen, extended = source_run
    options = dict(SMALL, spinup_days=0.0, start_from=frozen)
    restarted = simulate_held_suarez(tmp_path / "r.zarr", years=years(2), **options)
    for name in ("geopotential", "temperature", "u_component_of_wind"):
        np.testing.assert_array_equal(
            restarted[name].values, extended[name].isel(time=slice(4, 6)).values
        )
    assert "after 2 simulated days" in restarted.attrs["initial_condition"]
    assert (tmp_path / "r.zarr.start.npz").exists()  # frozen: the source may go on
    _, config, days = restart.read_start(tmp_path / "r.zarr.start.npz")
    assert days == 2.0 and config["truncation"] == 21


def test_restart_at_higher_truncation_and_fewer_levels_runs(source_run, tmp_path):
    frozen, extended = source_run
    options = dict(
        SMALL, truncation=31, n_sigma_levels=4, spinup_days=0.25, start_from=frozen
    )
    path = tmp_path / "t31.zarr"
    restarted = simulate_held_suarez(path, years=years(2), **options).load()
    assert restarted.sizes["latitude"] == 48
    assert "T31 by zero-padding" in restarted.attrs["initial_condition"]
    # 6 h after the restart the large scales still follow the source run (its
    # 1-day-old, near-rest atmosphere changes little in 6 h).
    zonal = restarted["temperature"].isel(time=0).mean(("longitude", "latitude"))
    source = extended["temperature"].isel(time=5).mean(("longitude", "latitude"))
    np.testing.assert_allclose(zonal.values, source.values, atol=2.0)
    with pytest.raises(ValueError, match="start_from"):  # resuming checks it
        simulate_held_suarez(
            path, years=years(3), **dict(options, start_from=tmp_path / "other.npz")
        )
    with pytest.raises(FileNotFoundError, match="does not exist"):
        simulate_held_suarez(
            tmp_path / "x.zarr",
            years=years(1),
            **dict(options, start_from=tmp_path / "missing.npz"),
        )
