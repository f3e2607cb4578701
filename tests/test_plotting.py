"""plot_mollweide draws a field on its grid and rejects what it cannot draw."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_sphere.plotting import plot_mollweide  # noqa: E402
from keras_sphere.sphere import Grid  # noqa: E402


def test_draws_a_field_with_north_up_and_east_right(tmp_path):
    grid = Grid(64, 64)
    # z = cos(theta): positive in the north. x = sin(theta) cos(phi): positive at phi=0.
    theta, phi = np.meshgrid(grid.theta, grid.phi, indexing="ij")
    ax = plot_mollweide(np.cos(theta), title="z", units="1")
    mesh = ax.collections[0]
    values = np.asarray(mesh.get_array()).reshape(64, 64)
    assert values[0].min() > 0.99 and values[-1].max() < -0.99  # north row first
    ax = plot_mollweide(np.sin(theta) * np.cos(phi), display_pixels=32)
    values = np.asarray(ax.collections[0].get_array()).reshape(32, 32)
    assert values.shape == (32, 32)  # strided for display only
    # After sorting longitudes to -pi..pi, phi = 0 sits in the middle column.
    assert values[16].argmax() in (15, 16, 17)
    ax.figure.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000


def test_rejects_batches():
    with pytest.raises(ValueError, match="select a map"):
        plot_mollweide(np.zeros((2, 8, 8)))
