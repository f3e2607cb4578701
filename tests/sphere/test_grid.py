import numpy as np
import pytest

from keras_sphere.sphere import Grid


def test_both_poles_and_longitudes():
    grid = Grid(9, 12)
    assert grid.theta[0] == 0.0 and grid.theta[-1] == pytest.approx(np.pi)
    assert grid.phi[0] == 0.0
    assert grid.lat_deg[0] == 90.0 and grid.lat_deg[-1] == pytest.approx(-90.0)
    np.testing.assert_allclose(grid.lon_deg[1], 30.0)
    assert grid.shape == (9, 12)


@pytest.mark.parametrize("n_lat", [3, 4, 8, 33, 721])
@pytest.mark.parametrize("n_lon", [1, 7, 64])
def test_weights_sum_to_4pi(n_lat, n_lon):
    grid = Grid(n_lat, n_lon)
    np.testing.assert_allclose(grid.weights.sum() * n_lon, 4 * np.pi, rtol=1e-14)


def test_weights_oracle_n4():
    # sphere-maths.md section 8: q = (2 pi / 4) [1/9, 8/9, 8/9, 1/9].
    np.testing.assert_allclose(
        Grid(4, 4).weights, [0.17453293, 1.3962634, 1.3962634, 0.17453293], atol=1e-7
    )
    np.testing.assert_allclose(
        Grid(8, 8).weights[:4], [0.0160285, 0.1493364, 0.2766506, 0.3433827], atol=1e-7
    )


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((32, 32), 15),
        ((64, 64), 31),
        ((2048, 2048), 1023),
        ((32, 64), 30),
        ((121, 240), 119),
        ((241, 480), 239),
        ((721, 1440), 719),
        ((9, 9), 4),
        ((16, 8), 3),
    ],
)
def test_max_bandlimit(shape, expected):
    assert Grid(*shape).max_bandlimit == expected


def test_for_bandlimit_is_the_square_model_grid():
    grid = Grid.for_bandlimit(127)
    assert grid.shape == (256, 256)
    assert grid.max_bandlimit == 127
    assert grid.model_bandlimit == 127


@pytest.mark.parametrize("shape", [(33, 33), (32, 64)])
def test_model_bandlimit_needs_even_square(shape):
    with pytest.raises(ValueError, match="Model grids are square"):
        _ = Grid(*shape).model_bandlimit


@pytest.mark.parametrize("shape", [(2, 8), (1, 4), (8, 0)])
def test_too_small_grid(shape):
    with pytest.raises(ValueError, match="n_lat >= 3"):
        Grid(*shape)


def test_non_integer_size():
    with pytest.raises(TypeError, match="must be an int"):
        Grid(32.0, 32)


def test_check_bandlimit_message():
    with pytest.raises(
        ValueError, match=r"lmax=40 is too large for a 64 x 64 grid.*31"
    ):
        Grid(64, 64).check_bandlimit(40)
