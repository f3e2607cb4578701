import math

import numpy as np
import pytest

from keras_sphere.sphere import Grid
from keras_sphere.sphere import isht
from keras_sphere.sphere import rotate_coefficients
from keras_sphere.sphere import sht
from keras_sphere.sphere import wavelets
from keras_sphere.testing import random_coefficients
from keras_sphere.testing import random_rotation

# (ell_max, J0, lam): dyadic powers of two, non-powers of two, J0 = 0, lam = 3.
BANKS = [(15, 1, 2.0), (63, 4, 2.0), (30, 0, 2.0), (255, 3, 2.0), (1023, 4, 2.0)]
BANKS += [(80, 1, 3.0), (100, 2, 1.5)]


def trapezoid_smooth_step(t: float, lam: float, steps: int = 200_001) -> float:
    """Independent oracle for k_lam(t): a fine trapezoid rule (s2wav uses 300 steps)."""

    def integral(lower):
        u = np.linspace(lower, 1.0, steps)
        x = 2 * lam / (lam - 1) * (u - 1 / lam) - 1
        inside = np.abs(x) < 1
        values = np.zeros_like(u)
        values[inside] = np.exp(-2.0 / (1.0 - x[inside] ** 2)) / u[inside]
        return np.trapezoid(values, u)

    return integral(t) / integral(1 / lam)


# --- kernels ---------------------------------------------------------------------


@pytest.mark.parametrize("ell_max, J0, lam", BANKS)
def test_admissibility_to_rounding(ell_max, J0, lam):  # noqa: N803
    # phi^2 + sum_j kappa_j^2 telescopes to k(ell / lam^(J + 1)) = 1: measured
    # <= 4.4e-16 in float64 (scattering.md: 1e-16 to 2e-15); test 1e-13.
    bank = wavelets.wavelet_filters(ell_max, J0, lam)
    assert np.abs(bank.admissibility() - 1.0).max() < 1e-13
    # Float32 tables (what the transforms use) stay within float32 rounding.
    admissible32 = bank.scaling.astype(np.float32) ** 2 + np.sum(
        bank.wavelets.astype(np.float32) ** 2, axis=0
    )
    assert np.abs(admissible32 - 1.0).max() < 1e-6


def test_generator_values_match_the_spec():
    # scattering.md section 1 (adaptive quadrature, 7 digits).
    values = wavelets.wavelet_generator(np.array([3 / 4, 5 / 8, 7 / 8]), 2.0)
    np.testing.assert_allclose(values, [0.7398971, 0.3051393, 0.9685004], atol=6e-8)


@pytest.mark.parametrize("lam", [2.0, 3.0])
def test_smooth_step_matches_a_second_quadrature(lam):
    # A 2e5-point trapezoid rule on the same integrand agrees to ~1e-10.
    points = np.linspace(1 / lam + 1e-3, 1 - 1e-3, 7)
    ours = wavelets.smooth_step(points, lam)
    oracle = [trapezoid_smooth_step(t, lam) for t in points]
    np.testing.assert_allclose(ours, oracle, atol=1e-9)
    np.testing.assert_array_equal(
        wavelets.smooth_step([0.0, 1 / lam, 1.0, 2.0]), [1.0, 1.0, 0.0, 0.0]
    )


def test_supports_peaks_and_bandlimits_for_B_64():  # noqa: N802
    bank = wavelets.wavelet_filters(63, J0=0)
    assert bank.J == 6 and bank.scales == tuple(range(7))
    # scattering.md section 1: supports per scale for B = 64, lam = 2.
    supports = {0: (1, 1), 1: (2, 3), 2: (3, 7), 3: (5, 15), 4: (9, 31), 5: (17, 63)}
    supports[6] = (33, 63)
    for scale, (first, last) in supports.items():
        nonzero = np.flatnonzero(bank.kernel(scale))
        assert (nonzero[0], nonzero[-1]) == (first, last), scale
        if 2**scale < 64:
            assert bank.kernel(scale)[2**scale] == 1.0
    assert np.all(bank.wavelets[:, 0] == 0.0)
    # Multiresolution bandlimits B_j = [4, 4, 8, 16, 32, 64, 64] (s2wav `samples`).
    assert bank.scale_bandlimits == (3, 3, 7, 15, 31, 63, 63)
    coarse = wavelets.wavelet_filters(63, J0=4)
    assert coarse.scaling_bandlimit == 15
    assert coarse.scaling[0] == 1.0
    assert np.all(coarse.scaling[16:] == 0.0) and coarse.scaling[15] > 0


def test_finest_scale():
    assert [wavelets.finest_scale(L) for L in (1, 15, 16, 63, 64, 1023)] == [
        1,
        4,
        5,
        6,
        7,
        10,
    ]
    assert wavelets.finest_scale(80, 3.0) == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ell_max": 63, "J0": 6}, "J0 must satisfy 0 <= J0 < J = 6"),
        ({"ell_max": 63, "J0": -1}, "J0 must satisfy"),
        ({"ell_max": 63, "J0": 2, "lam": 1.0}, "lam must be a number > 1"),
        ({"ell_max": 0, "J0": 0}, "ell_max >= 1"),
    ],
)
def test_bad_filter_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wavelets.wavelet_filters(**kwargs)


def test_too_small_error_says_which_grid_is_needed():
    with pytest.raises(ValueError, match=r"needs L >= 64 \(a grid of at least 130 x"):
        wavelets.wavelet_filters(63, 6)


# --- transform -------------------------------------------------------------------


def red_field(rng, grid, ell_max, batch=2):
    ell = np.arange(ell_max + 1)
    coeffs = random_coefficients(rng, ell_max, 0, (batch,), real_field=True)
    coeffs = coeffs / np.sqrt((ell + 1) * (ell + 2))[:, None]
    return coeffs, np.asarray(isht(coeffs, grid, 0, is_real=True))


@pytest.mark.parametrize(
    "shape, J0, lam", [((64, 64), 2, 2.0), ((32, 64), 0, 2.0), ((83, 83), 1, 3.0)]
)
def test_exact_reconstruction_and_energy(x64, rng, shape, J0, lam):  # noqa: N803
    grid = Grid(*shape)
    ell_max = grid.max_bandlimit
    coeffs, field = red_field(rng, grid, ell_max)
    scaling_map, maps = wavelets.wavelet_transform(field, grid, J0, lam)
    bank = wavelets.wavelet_filters(ell_max, J0, lam)
    assert scaling_map.dtype == np.float64
    assert scaling_map.shape[-2:] == wavelets.map_grid(bank.scaling_bandlimit).shape
    for band, values in zip(bank.scale_bandlimits, maps, strict=True):
        assert values.shape == (2, 2 * (band + 1), 2 * (band + 1))
    # Exact inverse (float64; measured ~3e-14 relative).
    back = wavelets.inverse_wavelet_transform(scaling_map, maps, J0, lam, grid=grid)
    assert np.abs(np.asarray(back) - field).max() < 1e-12 * np.abs(field).max()
    # Parseval frame: ||f||^2 = ||W^phi||^2 + sum_j ||W^j||^2 (measured ~1e-14),
    # each map's energy from its own coefficients (the SHT is exact on its grid).
    bands = (bank.scaling_bandlimit, *bank.scale_bandlimits)
    energy = 0.0
    for band, values in zip(bands, (scaling_map, *maps), strict=True):
        map_grid = wavelets.map_grid(band)
        energy += np.sum(np.abs(sht(values, map_grid, 0, max(band, 1))) ** 2)
    assert abs(energy / np.sum(np.abs(coeffs) ** 2) - 1.0) < 1e-12


def test_float32_reconstruction(rng):
    grid = Grid.for_bandlimit(63)
    _, field = red_field(rng, grid, 63)
    field = field.astype(np.float32)
    scaling_map, maps = wavelets.wavelet_transform(field, grid, 3)
    assert scaling_map.dtype == np.float32
    back = np.asarray(wavelets.inverse_wavelet_transform(scaling_map, maps, 3))
    # Float32 transforms with float64-built tables: ~2e-7 per SHT (sphere-maths.md).
    assert np.abs(back - field).max() < 2e-5 * np.abs(field).max()


def test_wavelet_transform_is_rotation_equivariant(x64, rng):
    # W^j(R f) = R W^j(f) exactly for band-limited f (a real kernel per degree).
    grid = Grid.for_bandlimit(31)
    coeffs, field = red_field(rng, grid, 31, batch=1)
    angles = random_rotation(rng)
    rotated = np.asarray(isht(rotate_coefficients(coeffs, *angles), grid, is_real=True))
    _, maps = wavelets.wavelet_transform(field, grid, 2)
    _, maps_rotated = wavelets.wavelet_transform(rotated, grid, 2)
    bank = wavelets.wavelet_filters(31, 2)
    for band, plain, turned in zip(
        bank.scale_bandlimits, maps, maps_rotated, strict=True
    ):
        map_grid = wavelets.map_grid(band)
        expected = rotate_coefficients(sht(plain, map_grid, 0, band), *angles)
        actual = sht(turned, map_grid, 0, band)
        assert np.abs(actual - expected).max() < 1e-12 * np.abs(expected).max()


def test_inverse_checks_the_maps(rng):
    grid = Grid.for_bandlimit(15)
    _, field = red_field(rng, grid, 15)
    scaling_map, maps = wavelets.wavelet_transform(field.astype(np.float32), grid, 1)
    with pytest.raises(ValueError, match="Expected 4 wavelet maps"):
        wavelets.inverse_wavelet_transform(scaling_map, maps[:-1], 1, ell_max=15)
    with pytest.raises(ValueError, match="must be sampled on"):
        wavelets.inverse_wavelet_transform(scaling_map[..., :-1], maps, 1)


def test_map_grid_is_the_model_grid():
    assert wavelets.map_grid(15).shape == (32, 32)
    assert wavelets.map_grid(0).shape == (4, 4)
    assert math.isclose(wavelets.wavelet_filters(15, 1).lam, 2.0)
