"""Tiny weather configurations, band-limited states and how states rotate."""

import numpy as np
import pytest

GRID_SHAPE = (16, 16)  # L = 7
NUM_SCALARS = 2
NUM_WIND_LEVELS = 2
CHANNELS = NUM_SCALARS + 2 * NUM_WIND_LEVELS
WIDTHS = (4, 8)  # levels 16 x 16 (L = 7) and 8 x 8 (L = 3)
# No bottleneck block: stem, one block down, one up and a skip exercise every path
# of the UNet with a quarter fewer operations to compile.
BOTTLENECK_BLOCKS = 0
# u and v of a level share one scale (required for equivariance).
DELTA_SCALE = (0.5, 0.4, 0.3, 0.2, 0.3, 0.2)


def tiny_backbone(**overrides):
    from keras_sphere.models import WeatherBackbone

    kwargs = dict(widths=WIDTHS, bottleneck_blocks=BOTTLENECK_BLOCKS)
    kwargs.update(overrides)
    return WeatherBackbone(GRID_SHAPE, NUM_SCALARS, NUM_WIND_LEVELS, **kwargs)


def tiny_forecaster(**overrides):
    from keras_sphere.models import WeatherForecaster

    return WeatherForecaster(tiny_backbone(**overrides), delta_scale=DELTA_SCALE)


def band_limited_state(rng, batch=2, ell_max=3):
    """A state (batch, 16, 16, 6) synthesised from random coefficients up to ell_max.

    Scalars are real spin-0 fields, each level's u + i v a spin-1 field, so rotated
    copies are exactly representable on the grid; unit RMS overall.
    """
    from keras_sphere.sphere import Grid
    from keras_sphere.sphere import isht
    from keras_sphere.testing import random_coefficients

    grid = Grid(*GRID_SHAPE)
    coeffs = random_coefficients(rng, ell_max, 0, (batch, NUM_SCALARS), True)
    scalars = np.asarray(isht(coeffs.astype(np.complex64), grid, 0, is_real=True))
    coeffs = random_coefficients(rng, ell_max, 1, (batch, NUM_WIND_LEVELS))
    wind = np.asarray(isht(coeffs.astype(np.complex64), grid, 1))
    state = np.concatenate([scalars, wind.real, wind.imag], axis=1)  # [b, c, j, k]
    return np.moveaxis(state / state.std(), 1, -1).astype(np.float32)


def negate_v(state):
    """The v channels negated: what a loader that keeps south-first rows gives."""
    state = np.array(state, np.float32)
    state[..., NUM_SCALARS + NUM_WIND_LEVELS :] *= -1
    return state


def rotate_state(state, rotation):
    """Rotate a state (batch, n_lat, n_lon, channels) by a rotation.

    Scalars rotate as spin-0 fields; each level's u + i v as a spin-1 field (then
    split back into u and v). `rotation`: ZYZ angles or a scipy Rotation.
    """
    from keras_sphere.sphere import Grid
    from keras_sphere.sphere import rotate_field

    grid = Grid(*np.shape(state)[1:3])
    fields = np.moveaxis(np.asarray(state, np.float32), -1, 1)  # [b, c, j, k]
    scalars = np.asarray(rotate_field(fields[:, :NUM_SCALARS], grid, rotation, 0))
    u = fields[:, NUM_SCALARS : NUM_SCALARS + NUM_WIND_LEVELS]
    v = fields[:, NUM_SCALARS + NUM_WIND_LEVELS :]
    wind = np.asarray(rotate_field(u + 1j * v, grid, rotation, 1))
    rotated = np.concatenate([scalars, wind.real, wind.imag], axis=1)
    return np.moveaxis(rotated, 1, -1).astype(np.float32)


def roll_state(state, columns):
    """Exact rotation about z by 2 pi columns / n_lon: roll the longitudes."""
    return np.roll(np.asarray(state), columns, axis=2)


def flip_state(state):
    """Exact rotation by pi about the x axis: rows reversed, longitudes negated.

    Spin s picks up (-1)^s (``layers.md`` section 10.1): scalars keep their sign,
    u and v change theirs.
    """
    state = np.asarray(state)
    n_lon = state.shape[2]
    flipped = np.array(state[:, ::-1][:, :, (-np.arange(n_lon)) % n_lon])
    flipped[..., NUM_SCALARS:] *= -1
    return flipped


def solid_body_state(batch=1, speed=1.0):
    """Axisymmetric state: scalars cos(theta) and P2(cos(theta)), u = U sin(theta).

    The wind is a solid-body rotation about the z axis, u + i v = U sin(theta) with
    v = 0, on every level.
    """
    from keras_sphere.sphere import Grid

    grid = Grid(*GRID_SHAPE)
    cos = np.cos(grid.theta)[:, None] * np.ones(grid.n_lon)
    sin = np.sin(grid.theta)[:, None] * np.ones(grid.n_lon)
    channels = [cos, 1.5 * cos**2 - 0.5]
    channels += [speed * sin] * NUM_WIND_LEVELS + [0 * sin] * NUM_WIND_LEVELS
    state = np.stack(channels, axis=-1)[None].repeat(batch, axis=0)
    return state.astype(np.float32)


def solid_body_wind(axis, grid_shape=GRID_SHAPE, speed=1.0):
    """(u, v) of the rigid rotation V(x) = U axis x x, eastward and northward."""
    from keras_sphere.sphere import Grid

    grid = Grid(*grid_shape)
    theta, phi = np.meshgrid(grid.theta, grid.phi, indexing="ij")
    points = np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1
    )
    velocity = speed * np.cross(np.asarray(axis, float), points)
    east = np.stack([-np.sin(phi), np.cos(phi), 0 * phi], -1)
    north = np.stack(
        [-np.cos(theta) * np.cos(phi), -np.cos(theta) * np.sin(phi), np.sin(theta)],
        -1,
    )
    return (velocity * east).sum(-1), (velocity * north).sum(-1)


@pytest.fixture(scope="module")
def random_forecaster():
    """A tiny forecaster with every weight random and non-zero (scale 0.3).

    Random values everywhere (moving statistics, biases, the res blocks' zero
    gammas) so that no zero-initialised weight can hide a term breaking
    equivariance; assigned from NumPy, so no initializer program is compiled.
    """
    from keras_sphere.testing import randomize_weights

    forecaster = tiny_forecaster()
    randomize_weights(forecaster, np.random.default_rng(7), 0.3)
    return forecaster


@pytest.fixture(scope="session")
def weather():
    """The helpers and constants of this file, for the test modules."""
    import types

    return types.SimpleNamespace(
        GRID_SHAPE=GRID_SHAPE,
        NUM_SCALARS=NUM_SCALARS,
        NUM_WIND_LEVELS=NUM_WIND_LEVELS,
        CHANNELS=CHANNELS,
        WIDTHS=WIDTHS,
        DELTA_SCALE=DELTA_SCALE,
        tiny_backbone=tiny_backbone,
        tiny_forecaster=tiny_forecaster,
        band_limited_state=band_limited_state,
        negate_v=negate_v,
        rotate_state=rotate_state,
        roll_state=roll_state,
        flip_state=flip_state,
        solid_body_state=solid_body_state,
        solid_body_wind=solid_body_wind,
    )
