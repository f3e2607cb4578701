import json

import numpy as np
import pytest

import keras_sphere  # noqa: F401
from keras_sphere.models import WeatherBackbone
from keras_sphere.testing import assert_equivariant
from keras_sphere.testing import relative_error


def test_layout_shapes_and_levels(weather):
    backbone = weather.tiny_backbone(bottleneck_blocks=1)
    assert backbone.level_bandlimits == (7, 3)
    assert backbone.channels == 6
    assert tuple(backbone.output.shape) == (None, 16, 16, 6)
    assert backbone.output.dtype == "float32"
    names = [layer.name for layer in backbone.layers]
    assert names[:5] == [
        "state",
        "to_spin_fields",
        "stem_conv_spin0",
        "stem_conv_spin1",
        "stem_add",
    ]
    assert {"down_1", "bottleneck_0", "up_0", "skip_0", "head_wind"} <= set(names)
    # One level of each spin per input group: spins (0) and (1) into (0, 1).
    assert backbone.get_layer("stem_conv_spin1").spins_in == (1,)
    assert backbone.get_layer("head_wind").spins_out == (1,)
    # Localized filters clipped to the degrees each kernel has (8 at L = 7, 4 at 3).
    assert backbone.get_layer("down_1").num_filter_params == 4
    assert backbone.get_layer("head_scalars").num_filter_params == 8


@pytest.mark.parametrize(
    "grid_shape, scalars, wind, widths, levels",
    [
        ((9, 16), 3, 1, (2, 2), (7, 3)),  # rectangular grid: L = min(7, 7)
        ((32, 32), 0, 2, (2, 2, 2), (15, 7, 3)),  # wind only
        ((16, 16), 2, 0, (2,), (7,)),  # scalars only, one level
    ],
)
def test_other_grids_and_channel_groups(grid_shape, scalars, wind, widths, levels):
    backbone = WeatherBackbone(grid_shape, scalars, wind, widths=widths)
    assert backbone.level_bandlimits == levels
    assert tuple(backbone.output.shape) == (None, *grid_shape, scalars + 2 * wind)


def test_config_round_trip(weather):
    backbone = weather.tiny_backbone(bottleneck_blocks=2, num_filter_params=None)
    config = backbone.get_config()
    clone = WeatherBackbone.from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(
        config, sort_keys=True
    )
    assert clone.count_params() == backbone.count_params()
    assert "bottleneck_1" in [layer.name for layer in clone.layers]


def test_exact_grid_symmetries(weather, random_forecaster, rng):
    # Longitude rolls by multiples of 2 columns (the 8 x 8 level's grid step) and the
    # pi rotation about x map every grid of the UNet onto itself, so the whole
    # network commutes with them to float32 rounding (measured 3e-7 to 9e-7).
    backbone = random_forecaster.backbone
    state = weather.band_limited_state(rng, ell_max=7)

    def predict(x):
        return backbone.predict(x, verbose=0)

    assert_equivariant(
        predict,
        state,
        [lambda x: weather.roll_state(x, 2), weather.flip_state],
        [lambda y: weather.roll_state(y, 2), weather.flip_state],
        1e-5,
        "weather backbone, grid symmetries",
    )


def test_axisymmetric_state_gives_axisymmetric_differences(weather, random_forecaster):
    # A state that does not depend on longitude (zonal scalars, solid-body wind
    # u = U sin(theta), v = 0) holds only m = 0 coefficients; convolutions keep m
    # and pointwise steps keep rows constant, so the differences are zonal too:
    # unchanged by any rotation about z, not only grid rolls (float32 rounding).
    state = weather.solid_body_state(batch=2)
    differences = random_forecaster.backbone.predict(state, verbose=0)
    assert np.abs(differences).max() > 1e-2
    spread = differences - differences.mean(axis=2, keepdims=True)
    assert np.abs(spread).max() <= 1e-5 * np.abs(differences).max()
    rotated = weather.rotate_state(differences, (0.37, 0.0, 1.21))
    assert relative_error(rotated, differences) < 1e-5


def test_bad_configurations():
    with pytest.raises(ValueError, match="L \\+ 1 divisible by 8"):
        WeatherBackbone((16, 16), 2, 1, widths=(4, 4, 4, 4))
    with pytest.raises(ValueError, match="coarsest L >= 1"):
        WeatherBackbone((8, 8), 2, 1, widths=(4, 4, 4))
    with pytest.raises(ValueError, match="at least one channel"):
        WeatherBackbone((16, 16), 0, 0)
    with pytest.raises(ValueError, match="num_wind_levels must be an integer"):
        WeatherBackbone((16, 16), 2, -1)
    with pytest.raises(ValueError, match="grid_shape must be \\(n_lat, n_lon\\)"):
        WeatherBackbone((2, 16), 2, 1)
    with pytest.raises(ValueError, match="widths needs at least one"):
        WeatherBackbone((16, 16), 2, 1, widths=())
    with pytest.raises(ValueError, match="bottleneck_blocks must be >= 0"):
        WeatherBackbone((16, 16), 2, 1, widths=(4,), bottleneck_blocks=0)
    with pytest.raises(ValueError, match="num_filter_params must be None or >= 1"):
        WeatherBackbone((16, 16), 2, 1, num_filter_params=0)
