"""Synthetic WeatherBench-2-layout datasets with known, band-limited fields."""

import types

import numpy as np
import pytest

LEVELS = (500, 850)


def wb2_dataset(
    latitudes,
    longitudes,
    fields,
    *,
    n_time=6,
    start="2000-01-01",
    step_hours=6,
    dims=("time", "level", "latitude", "longitude"),
):
    """A WB2-style dataset whose variables are `fields(lat_deg, lon_deg, t, level)`.

    `fields` maps a WB2 name to a function of 2-D latitude/longitude arrays (degrees),
    the time index and the level; dims may be given in any order.
    """
    import xarray

    lat2, lon2 = np.meshgrid(latitudes, longitudes, indexing="ij")
    times = np.datetime64(start) + np.arange(n_time) * np.timedelta64(step_hours, "h")
    data = {}
    for name, function in fields.items():
        values = np.stack(
            [
                np.stack([function(lat2, lon2, t, level) for level in LEVELS])
                for t in range(n_time)
            ]
        ).astype(np.float32)
        array = xarray.DataArray(
            values,
            dims=("time", "level", "latitude", "longitude"),
            coords={
                "time": times,
                "level": list(LEVELS),
                "latitude": latitudes,
                "longitude": longitudes,
            },
            attrs={"units": "1"},
        )
        data[name] = array.transpose(*dims)
    return xarray.Dataset(data)


def solid_body_wind(lat, lon, t, level):
    """u = U cos(lat) (a solid-body rotation about the polar axis), v = 0."""
    return (10.0 + level / 100.0 + t) * np.cos(np.radians(lat))


def tilted_scalar(lat, lon, t, level):
    """A degree-1 field: sin(lat) + cos(lat) cos(lon - 10 t degrees), plus level."""
    lat, lon = np.radians(lat), np.radians(lon - 10.0 * t)
    return level + np.sin(lat) + np.cos(lat) * np.cos(lon)


def gradient_wind(lat, lon, t, level):
    """(u, v) = grad of f = cos(lat) cos(lon): u = -sin(lon), v = -sin(lat) cos(lon)."""
    lat, lon = np.radians(lat), np.radians(lon)
    return -np.sin(lon), -np.sin(lat) * np.cos(lon)


@pytest.fixture
def gaussian_wb2():
    """A Gaussian 8 x 16 dataset, north first, longitudes from -180 (as shared data)."""
    from keras_sphere.sphere import GaussianGrid

    grid = GaussianGrid(8, 16)
    longitudes = (grid.longitudes + 180.0) % 360.0 - 180.0
    order = np.argsort(longitudes)
    return wb2_dataset(
        grid.latitudes,
        longitudes[order],
        {
            "temperature": tilted_scalar,
            "u_component_of_wind": lambda *a: gradient_wind(*a)[0],
            "v_component_of_wind": lambda *a: gradient_wind(*a)[1],
        },
    )


def random_dataset(grid, seed=0, n_time=12):
    """Gaussian noise fields around plausible means on `grid` (levels 500, 850)."""
    rng = np.random.default_rng(seed)
    cache = {}

    def noise(name, scale, offset):
        def field(lat, lon, t, level):
            key = (name, t, level)
            if key not in cache:
                cache[key] = offset + scale * rng.standard_normal(lat.shape)
            return cache[key]

        return field

    return wb2_dataset(
        grid.latitudes,
        grid.longitudes,
        {
            "geopotential": noise("z", 100.0, 5e4),
            "temperature": noise("t", 5.0, 260.0),
            "u_component_of_wind": noise("u", 8.0, 3.0),
            "v_component_of_wind": noise("v", 2.0, -1.0),
        },
        n_time=n_time,
    )


@pytest.fixture
def weather():
    """The helpers above, for tests (test modules are not importable packages)."""
    return types.SimpleNamespace(
        LEVELS=LEVELS,
        wb2_dataset=wb2_dataset,
        solid_body_wind=solid_body_wind,
        tilted_scalar=tilted_scalar,
        gradient_wind=gradient_wind,
        random_dataset=random_dataset,
    )
