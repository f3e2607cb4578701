import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from scipy.special import sph_harm_y

from keras_sphere.sphere import Grid
from keras_sphere.sphere import isht
from keras_sphere.sphere import rotate_coefficients
from keras_sphere.sphere import rotate_field
from keras_sphere.sphere import sht
from keras_sphere.testing import random_coefficients


def evaluate(coeffs, points):
    ell_max = coeffs.shape[0] - 1
    theta = np.arccos(np.clip(points[:, 2], -1, 1))
    phi = np.arctan2(points[:, 1], points[:, 0])
    return sum(
        coeffs[ell, ell_max + m] * sph_harm_y(ell, m, theta, phi)
        for ell in range(ell_max + 1)
        for m in range(-ell, ell + 1)
    )


def test_matches_point_evaluation_with_scipy(x64, rng):
    # (R f)(x) = f(R^-1 x) with scipy's intrinsic ZYZ rotations; float64 rounding.
    coeffs = random_coefficients(rng, 8)
    angles = (0.3, 1.1, -0.7)
    rotated = np.asarray(rotate_coefficients(coeffs, *angles))
    points = rng.standard_normal((30, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    inverse = Rotation.from_euler("ZYZ", angles).inv()
    np.testing.assert_allclose(
        evaluate(rotated, points), evaluate(coeffs, inverse.apply(points)), atol=1e-12
    )


def test_composition_and_inverse(x64, rng):
    coeffs = random_coefficients(rng, 10, 1)
    first, second = (0.3, 1.1, -0.7), (2.0, 0.4, 0.9)
    twice = rotate_coefficients(rotate_coefficients(coeffs, *first), *second)
    product = Rotation.from_euler("ZYZ", second) * Rotation.from_euler("ZYZ", first)
    np.testing.assert_allclose(
        twice, rotate_coefficients(coeffs, *product.as_euler("ZYZ")), atol=1e-12
    )
    back = rotate_coefficients(rotate_coefficients(coeffs, *first), 0.7, -1.1, -0.3)
    np.testing.assert_allclose(back, coeffs, atol=1e-12)


@pytest.mark.parametrize("spin", [0, 1, -2])
def test_z_rotation_is_a_longitude_roll(x64, rng, spin):
    grid = Grid(12, 16)
    coeffs = random_coefficients(rng, grid.max_bandlimit, spin)
    field = np.asarray(isht(coeffs, grid, spin))
    angle = 2 * np.pi * 3 / grid.n_lon
    rotated = rotate_field(field, grid, (angle, 0.0, 0.0), spin)
    np.testing.assert_allclose(rotated, np.roll(field, 3, axis=-1), atol=1e-12)


@pytest.mark.filterwarnings("ignore:Gimbal lock")  # scipy's Euler angles at beta = pi
@pytest.mark.parametrize("spin", [0, 1, 2, -1])
def test_rotation_by_pi_about_x_flips_the_grid(x64, rng, spin):
    # sphere-maths.md 3.2: f'_{j,k} = (-1)^s f_{n_lat-1-j, (-k) mod n_lon}.
    grid = Grid(12, 14)
    coeffs = random_coefficients(rng, grid.max_bandlimit, spin)
    field = np.asarray(isht(coeffs, grid, spin))
    rotation = Rotation.from_rotvec([np.pi, 0, 0])
    expected = (-1) ** spin * field[::-1][:, (-np.arange(grid.n_lon)) % grid.n_lon]
    np.testing.assert_allclose(
        rotate_field(field, grid, rotation, spin), expected, atol=1e-12
    )


def test_real_field_stays_real_and_power_is_invariant(rng):
    grid = Grid.for_bandlimit(15)
    coeffs = random_coefficients(rng, 15, real_field=True).astype(np.complex64)
    field = isht(coeffs, grid, is_real=True)
    rotated = rotate_field(field, grid, (0.4, 2.0, 1.0))
    assert rotated.dtype == np.float32
    power = (grid.weights[:, None] * np.asarray(field) ** 2).sum()
    rotated_power = (grid.weights[:, None] * np.asarray(rotated) ** 2).sum()
    # float32: 1e-5 relative.
    np.testing.assert_allclose(rotated_power, power, rtol=1e-5)


def test_traced_angles_in_jit(rng):
    grid = Grid.for_bandlimit(7)
    coeffs = random_coefficients(rng, 7).astype(np.complex64)
    augment = jax.jit(lambda a, beta: rotate_coefficients(a, 0.1, beta, 0.2))
    np.testing.assert_allclose(
        augment(coeffs, 1.3), rotate_coefficients(coeffs, 0.1, 1.3, 0.2), atol=1e-6
    )
    field = isht(coeffs, grid)
    assert sht(field, grid).shape == coeffs.shape


def test_bad_rotation():
    with pytest.raises(ValueError, match="ZYZ Euler angles"):
        rotate_field(np.zeros((8, 8)), Grid(8, 8), (0.1, 0.2))
