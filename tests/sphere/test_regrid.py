"""Exact spectral resampling between grids (keras_sphere/sphere/regrid.py).

Tolerances: float64 paths that are exact in exact arithmetic are held to 1e-10
(observed 1e-14 to 1e-12: sums of O(L^2) terms of size 1 in float64); HEALPix analysis
is iterative and approximate, its tolerances are stated where used.
"""

import pathlib
import sys

import numpy as np
import pytest

from keras_sphere.sphere import GaussianGrid
from keras_sphere.sphere import Grid
from keras_sphere.sphere import HealpixGrid
from keras_sphere.sphere import analyse
from keras_sphere.sphere import isht
from keras_sphere.sphere import regrid
from keras_sphere.sphere import sht
from keras_sphere.sphere import spin_harmonics
from keras_sphere.sphere import synthesise
from keras_sphere.sphere import truncate
from keras_sphere.sphere.regrid import _latitude_analyse

EXACT = 1e-10
WEATHER_FILE = pathlib.Path(
    "/work/shared/data/weather/surface_temperature_6h_96x192.nc"
)


def random_coefficients(rng, ell_max, spin, batch=(), real_field=False):
    """Random padded coefficients, zero where |m| > ell or ell < |spin|."""
    shape = (*batch, ell_max + 1, 2 * ell_max + 1)
    a = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    ell = np.arange(ell_max + 1)[:, None]
    m = np.arange(-ell_max, ell_max + 1)[None, :]
    a = np.where((np.abs(m) <= ell) & (ell >= abs(spin)), a, 0.0)
    if real_field:  # a_ell,-m = (-1)^m conj(a_ell,m)
        a = (a + (-1.0) ** m * np.conj(a[..., ::-1])) / 2
    return a


def max_error(actual, expected):
    return float(np.max(np.abs(np.asarray(actual) - np.asarray(expected))))


def mesh(grid):
    """(theta, phi) of every sample, each of shape grid.shape."""
    if isinstance(grid, HealpixGrid):
        return grid.theta, grid.phi
    return np.meshgrid(grid.theta, grid.phi, indexing="ij")


def gradient_field(theta, phi):
    """f = sin(theta) cos(theta) cos(phi) (a multiple of Re Y_2^1) and grad f.

    u = (1 / sin theta) df/dphi = -cos(theta) sin(phi) (eastward),
    v = -df/dtheta = -cos(2 theta) cos(phi) (northward).
    """
    f = np.sin(theta) * np.cos(theta) * np.cos(phi)
    u = -np.cos(theta) * np.sin(phi)
    v = -np.cos(2 * theta) * np.cos(phi)
    return f, u, v


def gradient_factor(ell_max):
    """i sqrt(ell (ell + 1)), shape (ell_max + 1, 1): spin-1 coefficients of grad f."""
    ell = np.arange(ell_max + 1)[:, None]
    return 1j * np.sqrt(ell * (ell + 1.0))


# --------------------------------------------------------------------------------
# Grids


def test_gaussian_grid_nodes_and_weights():
    grid = GaussianGrid(12, 24)
    x, w = np.polynomial.legendre.leggauss(12)
    np.testing.assert_allclose(np.cos(grid.colatitudes), x[::-1], atol=1e-15)
    assert np.all(np.diff(grid.colatitudes) > 0)  # north first
    assert 0 < grid.colatitudes[0] and grid.colatitudes[-1] < np.pi  # no poles
    np.testing.assert_allclose(grid.latitudes, 90 - np.degrees(grid.theta), atol=1e-12)
    np.testing.assert_allclose(grid.latitudes, -grid.latitudes[::-1], atol=1e-12)
    np.testing.assert_allclose(grid.longitudes[:2], [0.0, 15.0])
    np.testing.assert_allclose(grid.weights.sum() * grid.n_lon, 4 * np.pi, rtol=1e-14)
    assert grid.shape == (12, 24)


@pytest.mark.parametrize(
    "shape, expected", [((12, 24), 11), ((13, 23), 11), ((8, 30), 7), ((96, 192), 95)]
)
def test_gaussian_max_bandlimit(shape, expected):
    assert GaussianGrid(*shape).max_bandlimit == expected


def test_grid_has_latitudes_and_longitudes_in_degrees():
    grid = Grid(5, 8)
    np.testing.assert_allclose(grid.latitudes, [90, 45, 0, -45, -90], atol=1e-12)
    np.testing.assert_allclose(grid.longitudes, 45.0 * np.arange(8))


@pytest.mark.parametrize("cls", [Grid, GaussianGrid])
def test_grid_arguments_are_checked(cls):
    with pytest.raises(TypeError, match="must be an int"):
        cls(12.0, 24)
    with pytest.raises(ValueError, match="n_lat"):
        cls(0, 24)


# --------------------------------------------------------------------------------
# Analysis and synthesis


@pytest.mark.parametrize("spin", [0, 1, -1])
@pytest.mark.parametrize("shape", [(12, 24), (13, 23), (8, 30)])
def test_gaussian_analysis_inverts_synthesis(rng, spin, shape):
    grid = GaussianGrid(*shape)
    coeffs = random_coefficients(rng, grid.max_bandlimit, spin, batch=(2,))
    field = synthesise(coeffs, grid, spin)
    assert field.shape == (2, *shape) and field.dtype == np.complex128
    assert max_error(analyse(field, grid, spin), coeffs) < EXACT


@pytest.mark.parametrize("spin", [0, 1])
def test_gaussian_bandlimit_is_tight(spin):
    # Gauss-Legendre on 8 rows integrates degree 2 * 8 - 1: sY_7,0 is analysed
    # exactly, sY_8,0 (one degree above max_bandlimit = 7) is not.
    grid = GaussianGrid(8, 30)
    for ell, expect_exact in ((7, True), (8, False)):
        rows = spin_harmonics(ell, np.array([0]), spin, grid.theta)[ell, 0]
        field = np.repeat(rows[:, None], grid.n_lon, axis=1) + 0j
        coeffs = _latitude_analyse(field, grid, spin, ell)
        error = abs(coeffs[ell, ell] - 1.0)
        assert (error < EXACT) if expect_exact else (error > 1e-3), (ell, error)


def test_real_spin0_synthesis(rng):
    grid = GaussianGrid(10, 20)
    coeffs = random_coefficients(rng, 9, 0, real_field=True)
    field = synthesise(coeffs, grid, is_real=True)
    assert field.dtype == np.float64
    assert max_error(field, synthesise(coeffs, grid).real) == 0.0
    assert max_error(synthesise(coeffs, grid).imag, 0.0) < EXACT


@pytest.mark.parametrize("spin", [0, 1, -1])
@pytest.mark.parametrize("shape", [(12, 22), (9, 30), (8, 8)])
def test_equiangular_path_equals_sht_and_isht(rng, x64, spin, shape):
    # (9, 30) is latitude-limited: L = 7 needs the exact folded analysis table.
    grid = Grid(*shape)
    coeffs = random_coefficients(rng, grid.max_bandlimit, spin, batch=(2,))
    field = synthesise(coeffs, grid, spin)
    assert max_error(field, isht(coeffs, grid, spin)) < EXACT
    assert max_error(analyse(field, grid, spin), sht(field, grid, spin)) < EXACT
    assert max_error(analyse(field, grid, spin), coeffs) < EXACT


def test_latitude_limited_equiangular_analysis_with_14_fine_rows(rng):
    grid = Grid(8, 30)  # L = 6
    coeffs = random_coefficients(rng, 6, 1)
    field = synthesise(coeffs, grid, 1)
    assert max_error(analyse(field, grid, 1), coeffs) < EXACT


def test_analysis_lmax_truncates_exactly(rng):
    grid = GaussianGrid(12, 24)
    field = synthesise(random_coefficients(rng, 11, 1), grid, 1)
    full = analyse(field, grid, 1)
    assert max_error(analyse(field, grid, 1, lmax=5), truncate(full, 5)) < EXACT


# --------------------------------------------------------------------------------
# Regridding


@pytest.mark.parametrize("spin", [0, 1, -1])
def test_gaussian_to_equiangular_and_back(rng, x64, spin):
    source, target = GaussianGrid(12, 24), Grid(13, 24)  # both hold L = 11
    coeffs = random_coefficients(rng, 11, spin, batch=(3,), real_field=spin == 0)
    field = synthesise(coeffs, source, spin, is_real=spin == 0)
    moved = regrid(field, source, target, spin)
    assert moved.shape == (3, 13, 24)
    assert moved.dtype == (np.float64 if spin == 0 else np.complex128)
    expected = np.asarray(isht(coeffs, target, spin))
    assert max_error(moved, expected.real if spin == 0 else expected) < EXACT
    assert max_error(regrid(moved, target, source, spin), field) < EXACT


def test_equiangular_latitude_limited_to_gaussian(rng):
    # Grid(9, 30) holds L = 7 only through its exact folded table.
    source, target = Grid(9, 30), GaussianGrid(8, 16)
    coeffs = random_coefficients(rng, 7, 0, real_field=True)
    field = synthesise(coeffs, source, is_real=True)
    expected = synthesise(coeffs, target, is_real=True)
    assert max_error(regrid(field, source, target), expected) < EXACT


@pytest.mark.parametrize("target", [Grid(14, 24), GaussianGrid(7, 15)])
def test_gradient_oracle_spin1(target):
    # sphere-maths.md 3.3: (u, v) = grad f has spin-1 coefficients i sqrt(l(l+1)) f_lm,
    # and u - i v has the same spin -1 coefficients.
    source = GaussianGrid(10, 20)
    f, u, v = gradient_field(*mesh(source))
    f_lm = analyse(f, source)
    factor = gradient_factor(source.max_bandlimit)
    assert np.abs(f_lm).max() > 0.1
    assert max_error(analyse(u + 1j * v, source, 1), factor * f_lm) < EXACT
    assert max_error(analyse(u - 1j * v, source, -1), factor * f_lm) < EXACT
    # Regridded winds equal the analytic winds on the target grid.
    _, u_t, v_t = gradient_field(*mesh(target))
    lmax = min(source.max_bandlimit, target.max_bandlimit)
    moved = regrid(u + 1j * v, source, target, 1, lmax=lmax)
    assert max_error(moved, u_t + 1j * v_t) < EXACT
    moved = regrid(u - 1j * v, source, target, -1, lmax=lmax)
    assert max_error(moved, u_t - 1j * v_t) < EXACT


def test_gradient_oracle_zonal():
    # f = cos(theta): u = 0, v = sin(theta) (northward).
    source, target = GaussianGrid(6, 12), Grid(8, 12)
    theta, _ = mesh(source)
    coeffs = analyse(1j * np.sin(theta), source, 1)
    f_lm = analyse(np.cos(theta), source)
    assert max_error(coeffs, gradient_factor(5) * f_lm) < EXACT
    theta_t, _ = mesh(target)
    moved = regrid(1j * np.sin(theta), source, target, 1)
    assert max_error(moved, 1j * np.sin(theta_t)) < EXACT


def test_solid_body_rotation():
    # u = U sin(theta), v = 0 has only a_{1,0} = U sqrt(8 pi / 3) (spin 1).
    wind = 12.5
    source, target = GaussianGrid(16, 32), Grid(18, 32)
    theta, _ = mesh(source)
    field = wind * np.sin(theta) + 0j
    coeffs = analyse(field, source, 1)
    expected = np.zeros_like(coeffs)
    expected[1, 15] = wind * np.sqrt(8 * np.pi / 3)
    assert max_error(coeffs, expected) < EXACT * wind
    theta_t, _ = mesh(target)
    moved = regrid(field, source, target, 1)
    assert max_error(moved, wind * np.sin(theta_t)) < EXACT * wind


def test_truncation_is_refused_without_lmax_and_exact_with_it(rng):
    source, target = GaussianGrid(16, 32), Grid(10, 12)  # L = 15 and L = 5
    coeffs = random_coefficients(rng, 15, 0, real_field=True)
    field = synthesise(coeffs, source, is_real=True)
    with pytest.raises(ValueError, match=r"up to 15.*only up to 5.*lmax=<= 5"):
        regrid(field, source, target)
    moved = regrid(field, source, target, lmax=5)
    expected = synthesise(truncate(coeffs, 5), target, is_real=True)
    assert max_error(moved, expected) < EXACT
    with pytest.raises(ValueError, match=r"lmax=7 is above the bandlimit 5 of the"):
        regrid(field, source, target, lmax=7)


# --------------------------------------------------------------------------------
# HEALPix

# Round-trip tolerance at nside 16 for fields band-limited at L = 8: three Jacobi
# iterations (healpy's iter=3) leave a coefficient error of 2e-9 (measured, healpy
# 1.20); 1e-7 leaves room for other seeds.
HEALPIX_TOLERANCE = 1e-7


@pytest.fixture
def healpy():
    return pytest.importorskip("healpy", reason="HEALPix tests need healpy")


@pytest.mark.parametrize("spin", [0, 1, -1])
def test_healpix_round_trip(rng, healpy, spin):
    grid, source = HealpixGrid(16), GaussianGrid(9, 18)  # L = 8
    coeffs = random_coefficients(rng, 8, spin, real_field=spin == 0)
    field = synthesise(coeffs, source, spin, is_real=spin == 0)
    on_healpix = regrid(field, source, grid, spin)
    assert on_healpix.shape == (grid.npix,)
    back = regrid(on_healpix, grid, source, spin, lmax=8)
    assert max_error(back, field) < HEALPIX_TOLERANCE
    found = analyse(on_healpix, grid, spin, lmax=8)
    assert max_error(found, coeffs) < HEALPIX_TOLERANCE


def test_healpix_synthesis_matches_healpy_spin0(rng, healpy):
    grid = HealpixGrid(8)
    coeffs = random_coefficients(rng, 6, 0, real_field=True)
    ell, m = healpy.Alm.getlm(6)
    expected = healpy.alm2map(coeffs[ell, 6 + m], 8, lmax=6, mmax=6)
    assert max_error(synthesise(coeffs, grid, is_real=True), expected) < EXACT


def test_healpix_gradient_oracle(healpy):
    # Pins healpy's spin-1 sign convention: the analytic grad f at pixel centres.
    grid, source = HealpixGrid(16), GaussianGrid(6, 12)
    _, u, v = gradient_field(*mesh(source))
    _, u_hp, v_hp = gradient_field(*mesh(grid))
    moved = regrid(u + 1j * v, source, grid, 1)  # synthesis: exact
    assert max_error(moved, u_hp + 1j * v_hp) < EXACT
    back = regrid(u_hp + 1j * v_hp, grid, source, 1, lmax=5)
    assert max_error(back, u + 1j * v) < HEALPIX_TOLERANCE
    back = regrid(u_hp - 1j * v_hp, grid, source, -1, lmax=5)
    assert max_error(back, u - 1j * v) < HEALPIX_TOLERANCE


def test_healpix_grid_properties(healpy):
    grid = HealpixGrid(4)
    assert grid.shape == (192,) and grid.max_bandlimit == 8
    theta, phi = healpy.pix2ang(4, np.arange(192))
    np.testing.assert_allclose(grid.latitudes, 90 - np.degrees(theta))
    np.testing.assert_allclose(grid.longitudes, np.degrees(phi))


def test_healpix_without_healpy_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "healpy", None)  # makes `import healpy` fail
    with pytest.raises(ImportError, match=r"pip install healpy.*keras-sphere\[cmb\]"):
        HealpixGrid(16)


# --------------------------------------------------------------------------------
# Real data: a Gaussian T63 grid (data.md 2.3)


@pytest.fixture
def surface_temperature():
    if not WEATHER_FILE.exists():
        pytest.skip(f"needs the shared data file {WEATHER_FILE}")
    from scipy.io import netcdf_file

    with netcdf_file(WEATHER_FILE, mmap=False) as data:
        lat = np.array(data.variables["lat"][:], np.float64)
        lon = np.array(data.variables["lon"][:], np.float64)
        field = np.array(data.variables["tC"][0], np.float64)  # one time step, degC
    # Longitudes run -180 .. 178.125: roll by 96 columns so that column 0 is 0E.
    return lat, np.roll(lon, -96) % 360, np.roll(field, -96, axis=-1)


def test_real_gaussian_file(surface_temperature):
    lat, lon, field = surface_temperature
    source, target = GaussianGrid(96, 192), Grid(192, 192)  # both hold L = 95
    np.testing.assert_allclose(lat, source.latitudes, atol=1e-10, rtol=0)
    np.testing.assert_allclose(lon, source.longitudes, atol=1e-10, rtol=0)
    scale = np.abs(field).max()
    moved = regrid(field, source, target)
    assert moved.shape == (192, 192) and np.all(np.isfinite(moved))
    # The coefficients survive exactly.
    assert max_error(analyse(moved, target), analyse(field, source)) < EXACT * scale
    # The model output is not band-limited at 95 (RMS 0.84 degC above it), so the
    # way back gives its L <= 95 part, which itself round-trips exactly.
    band_limited = regrid(field, source, source)
    back = regrid(moved, target, source)
    assert max_error(back, band_limited) < EXACT * scale
    assert np.sqrt(np.mean((band_limited - field) ** 2)) < 1.0
    again = regrid(regrid(band_limited, source, target), target, source)
    assert max_error(again, band_limited) < EXACT * scale


# --------------------------------------------------------------------------------
# Errors


def test_error_messages(rng):
    grid = GaussianGrid(8, 16)
    field = np.zeros((8, 16))
    with pytest.raises(ValueError, match=r"\(n_lat, n_lon\) = \(8, 16\).*\(16, 8\)"):
        regrid(np.zeros((16, 8)), grid, Grid(10, 16))
    with pytest.raises(ValueError, match=r"\(n_lat, n_lon\) = \(10, 16\)"):
        regrid(field, Grid(10, 16), grid)
    bad = field.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*\(2, 3\)"):
        regrid(bad, grid, Grid(10, 16))
    batch = np.zeros((3, 8, 16))
    batch[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinite.*indices \[1\]"):
        analyse(batch, grid)
    with pytest.raises(ValueError, match=r"spin 0.*\+1 / -1.*Received: spin=2"):
        regrid(field + 0j, grid, Grid(10, 16), spin=2)
    with pytest.raises(TypeError, match=r"complex: pass u \+ 1j \* v"):
        regrid(field, grid, Grid(10, 16), spin=1)
    with pytest.raises(
        ValueError, match=r"lmax=9 is above the bandlimit 7 of the source"
    ):
        regrid(field, grid, Grid(20, 32), lmax=9)
    with pytest.raises(ValueError, match=r"lmax must be >= \|spin\| = 1"):
        analyse(field + 0j, grid, 1, lmax=0)
    with pytest.raises(TypeError, match="Grid, GaussianGrid or HealpixGrid"):
        regrid(field, grid, (10, 16))
    with pytest.raises(ValueError, match=r"padded axes \(L \+ 1, 2L \+ 1\)"):
        synthesise(np.zeros((4, 5)), grid)
    with pytest.raises(ValueError, match=r"L = 9 are above.*truncate\(coeffs, 7\)"):
        synthesise(random_coefficients(rng, 9, 0), grid)
    with pytest.raises(ValueError, match="lmax must be >= 0"):
        analyse(field, grid, lmax=-1)
    with pytest.raises(ValueError, match="is_real=True is for spin-0"):
        synthesise(random_coefficients(rng, 3, 1), grid, 1, is_real=True)
