import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from scipy.special import sph_harm_y

from keras_sphere.sphere import Grid
from keras_sphere.sphere import isht
from keras_sphere.sphere import rotate_coefficients
from keras_sphere.sphere import rotate_field
from keras_sphere.sphere import rotation as rotation_module
from keras_sphere.sphere import sht
from keras_sphere.sphere import wigner_delta
from keras_sphere.sphere.delta_recursion import MAX_ELL
from keras_sphere.sphere.delta_recursion import DeltaRecursion
from keras_sphere.sphere.delta_recursion import delta_quadrants
from keras_sphere.sphere.rotation import _TABLE_MAX_ELL
from keras_sphere.sphere.rotation import _delta_tables
from keras_sphere.sphere.rotation import _rotate_by_degree_numpy
from keras_sphere.sphere.rotation import _rotate_with_tables
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


# -- Degree-by-degree rotation (large bandlimits) ------------------------------------


def full_delta(quadrant):
    """Delta^ell, shape (2 ell + 1, 2 ell + 1), from its quadrant m', m >= 0.

    Uses Delta_{k,-n} = (-1)^(ell + k) Delta_{k,n} and Delta_{-k,n} = (-1)^(ell + n)
    Delta_{k,n} (checked on the tables in `test_quadrant_symmetries_of_the_tables`).
    """
    ell = quadrant.shape[0] - 1
    signs = np.where((ell + np.arange(ell + 1)) % 2 == 1, -1.0, 1.0)
    full = np.zeros((2 * ell + 1, 2 * ell + 1))
    full[ell:, ell:] = quadrant
    full[ell:, :ell] = (signs[:, None] * quadrant)[:, :0:-1]
    all_signs = np.concatenate([signs[:0:-1], signs])
    full[:ell] = full[:ell:-1] * all_signs[None, :]
    return full


def test_quadrant_symmetries_of_the_tables():
    ell_max = 9
    delta = wigner_delta(ell_max)
    for ell in range(ell_max + 1):
        inner = delta[ell, ell_max - ell : ell_max + ell + 1]
        inner = inner[:, ell_max - ell : ell_max + ell + 1]
        np.testing.assert_allclose(full_delta(inner[ell:, ell:]), inner, atol=1e-15)


@pytest.mark.parametrize(
    "ell_max", [0, 1, 2, 64, pytest.param(200, marks=pytest.mark.large)]
)
def test_delta_recursion_matches_the_tables(ell_max):
    # The same float64 recursion in ell, run per pair (wigner.py) and for all pairs at
    # once with a scale (delta_recursion.py): 1e-12 (measured 2e-15 at 64, 6e-15 at
    # 200).
    delta = wigner_delta(ell_max)
    for ell, quadrant in enumerate(delta_quadrants(ell_max)):
        expected = delta[ell, ell_max : ell_max + ell + 1, ell_max : ell_max + ell + 1]
        np.testing.assert_allclose(quadrant, expected, rtol=0, atol=1e-12)


def test_delta_recursion_against_sympy():
    # Exact oracle: sympy's wigner_d_small (rows m' = -ell..ell, columns m), evaluated
    # to float64; 1e-14.
    sympy = pytest.importorskip("sympy")
    from sympy.physics.wigner import wigner_d_small

    ell_max = 8
    for ell, quadrant in enumerate(delta_quadrants(ell_max)):
        if ell in (1, 2, 5, 8):
            exact = np.array(wigner_d_small(ell, sympy.pi / 2).evalf(20), float)
            np.testing.assert_allclose(full_delta(quadrant), exact, atol=1e-14)


@pytest.mark.large
def test_delta_is_orthogonal_at_1023():
    # Delta^ell is a real orthogonal matrix. Measured max |Delta^T Delta - I| = 2.4e-12
    # at ell = 1023: float64 rounding over ~1000 recursion steps plus the 2047-term
    # sums; 1e-10 bounds it with margin and would catch any unstable growth (errors
    # grow exponentially when a recursion goes wrong). Checked once at ell = 2000
    # (MAX_ELL): 7.7e-12, too slow for a test.
    for ell, quadrant in enumerate(delta_quadrants(1023)):
        if ell in (300, 1023):
            full = full_delta(quadrant)
            error = np.abs(full.T @ full - np.eye(2 * ell + 1)).max()
            print(f"ell = {ell}: max |Delta^T Delta - I| = {error:.1e}")
            assert error < 1e-10


def test_delta_recursion_limits():
    with pytest.raises(ValueError, match="ell_max <= 2000"):
        DeltaRecursion(MAX_ELL + 1)
    recursion = DeltaRecursion(1)
    recursion.advance()
    with pytest.raises(ValueError, match="reached ell_max"):
        recursion.advance()


@pytest.mark.parametrize("spin", [0, 1, -2])
def test_degree_by_degree_matches_the_table_path(x64, rng, spin):
    # Both in float64 from the same angles; 1e-12 (measured 4e-14 at L = 64).
    coeffs = random_coefficients(rng, 64, spin, batch_shape=(2, 3))
    angles = (0.3, 1.1, -0.7)
    expected = np.asarray(_rotate_with_tables(jnp.asarray(coeffs), *angles, "float64"))
    np.testing.assert_allclose(
        _rotate_by_degree_numpy(coeffs, *angles), expected, rtol=0, atol=1e-12
    )


@pytest.mark.large
def test_degree_by_degree_matches_the_table_path_at_200(x64, rng):
    # 1e-12 (measured 1.6e-13); the float64 table at L = 200 takes 260 MB.
    coeffs = random_coefficients(rng, 200, 1)
    angles = (2.0, 0.4, 0.9)
    expected = np.asarray(_rotate_with_tables(jnp.asarray(coeffs), *angles, "float64"))
    np.testing.assert_allclose(
        _rotate_by_degree_numpy(coeffs, *angles), expected, rtol=0, atol=1e-12
    )


def test_degree_by_degree_takes_per_field_angles(rng):
    coeffs = random_coefficients(rng, 12, batch_shape=(3, 2))
    alpha, beta = np.array([0.1, 0.2, 0.3]), np.array([[1.0, 2.0], [0.5, 3.0], [0, 1]])
    rotated = _rotate_by_degree_numpy(coeffs, alpha, beta, -0.4)
    for i in range(3):
        for j in range(2):
            one = _rotate_by_degree_numpy(coeffs[i, j], alpha[i], beta[i, j], -0.4)
            np.testing.assert_allclose(rotated[i, j], one, atol=1e-13)
    with pytest.raises(ValueError, match="leading axes of the coefficients"):
        _rotate_by_degree_numpy(coeffs, np.zeros(2), 0.0, 0.0)


def test_large_bandlimits_take_the_degree_by_degree_path(rng):
    ell_max = _TABLE_MAX_ELL + 1
    coeffs = random_coefficients(rng, ell_max, batch_shape=(2,)).astype(np.complex64)
    _delta_tables.cache_clear()
    rotated = rotate_coefficients(coeffs, 0.3, 1.1, -0.7)
    assert rotated.dtype == np.complex64
    assert _delta_tables.cache_info().currsize == 0  # no Delta table at this size
    back = rotate_coefficients(rotated, 0.7, -1.1, -0.3)
    # Two float32 roundings of maps that are unitary per degree: each at most 6e-8 of
    # a degree's norm, itself at most max|a| sqrt(2 ell + 1); 1e-6 max|a| sqrt(L)
    # bounds their sum with margin.
    np.testing.assert_allclose(
        back, coeffs, rtol=0, atol=1e-6 * np.abs(coeffs).max() * np.sqrt(ell_max)
    )


@pytest.fixture
def recursion_from_ell_4(monkeypatch):
    """Rotate every bandlimit above 4 degree by degree, so small tests reach it."""
    monkeypatch.setattr(rotation_module, "_TABLE_MAX_ELL", 4)


def test_degree_by_degree_dispatch_matches_the_tables(rng, recursion_from_ell_4):
    coeffs = random_coefficients(rng, 12, batch_shape=(2,)).astype(np.complex64)
    angles = (0.3, 1.1, -0.7)
    rotated = rotate_coefficients(coeffs, *angles)
    assert rotated.dtype == np.complex64
    expected = _rotate_with_tables(jnp.asarray(coeffs), *angles, "float32")
    # The float32 table path rounds at each stage, the recursion once: 1e-5 of the
    # largest coefficient.
    scale = np.abs(coeffs).max()
    np.testing.assert_allclose(rotated, expected, rtol=0, atol=1e-5 * scale)


def test_degree_by_degree_traced_and_vmapped(rng, recursion_from_ell_4):
    coeffs = random_coefficients(rng, 12, batch_shape=(3,)).astype(np.complex64)
    betas = np.array([0.2, 1.3, 2.9], np.float32)
    eager = np.stack(
        [
            rotate_coefficients(c, 0.1, b, 0.2)
            for c, b in zip(coeffs, betas, strict=True)
        ]
    )
    # float32 angles inside the trace (jax_enable_x64 off) against float64 eager
    # angles: phases differ by |m| * 1e-7 rad at most; 1e-5 of the largest value.
    scale = np.abs(eager).max()
    jitted = jax.jit(lambda c, b: rotate_coefficients(c, 0.1, b, 0.2))
    np.testing.assert_allclose(jitted(coeffs[1], betas[1]), eager[1], atol=1e-5 * scale)
    vmapped = jax.jit(jax.vmap(lambda c, b: rotate_coefficients(c, 0.1, b, 0.2)))
    np.testing.assert_allclose(vmapped(coeffs, betas), eager, atol=1e-5 * scale)


def test_degree_by_degree_says_it_has_no_derivative(recursion_from_ell_4):
    coeffs = np.ones((8, 15), np.complex64)

    def loss(beta):
        return jnp.abs(rotate_coefficients(coeffs, 0.1, beta, 0.2)).sum()

    with pytest.raises(NotImplementedError, match="stop_gradient"):
        jax.grad(loss)(0.3)


@pytest.mark.parametrize("spin", [0, 1])
def test_degree_by_degree_field_rotations_are_exact_grid_moves(
    x64, rng, spin, recursion_from_ell_4
):
    # z-rotation by 2 pi k / n_lon is a roll; R_x(pi) the flip of sphere-maths.md 3.2.
    # float64 transforms and rotation: 1e-12. (The grid is one where spin-1 SHT round
    # trips are exact: on some others, e.g. 14 x 18, they are not, at HEAD a47c9a2.)
    grid = Grid(12, 14)
    coeffs = random_coefficients(rng, grid.max_bandlimit, spin)
    field = np.asarray(isht(coeffs, grid, spin))
    angle = 2 * np.pi * 5 / grid.n_lon
    rolled = rotate_field(field, grid, (angle, 0.0, 0.0), spin)
    np.testing.assert_allclose(rolled, np.roll(field, 5, axis=-1), atol=1e-12)
    flipped = rotate_field(field, grid, (0.0, np.pi, np.pi), spin)  # = R_x(pi)
    expected = (-1) ** spin * field[::-1][:, (-np.arange(grid.n_lon)) % grid.n_lon]
    np.testing.assert_allclose(flipped, expected, atol=1e-12)


def test_degree_by_degree_against_healpy(x64, rng):
    # Independent code: HEALPix's rotate_alm (C++; its own Wigner-d recursion) rotates
    # a real field's a_ell,m (m >= 0) with psi = gamma, theta = beta, phi = alpha
    # (healpy 1.20). 1e-11 (measured 1e-13).
    healpy = pytest.importorskip("healpy")
    ell_max = 120
    coeffs = random_coefficients(rng, ell_max, real_field=True)
    angles = (0.3, 1.1, -0.7)
    ells, orders = healpy.Alm.getlm(ell_max)
    alm = coeffs[ells, ell_max + orders].copy()
    healpy.rotate_alm(alm, angles[2], angles[1], angles[0], lmax=ell_max)
    rotated = np.asarray(rotate_coefficients(coeffs, *angles))
    np.testing.assert_allclose(rotated[ells, ell_max + orders], alm, atol=1e-11)


def degree_norms(coeffs):
    return np.sqrt((np.abs(coeffs) ** 2).sum(axis=-1))


@pytest.mark.large
def test_composition_and_inverse_at_1023_in_float32(rng):
    # complex64 coefficients at L = 1023 (a 2048 x 2048 map), each rotation computed in
    # float64 and rounded once to complex64. A rotation is unitary per degree, so each
    # rounding adds at most 2^-24 = 6e-8 of a degree's norm ||a_ell|| and later
    # rotations carry it unchanged: composition compares three roundings with one, the
    # inverse two, so per-degree relative errors stay below 4 * 6e-8 plus float64
    # rounding (1e-11). Bound: 5e-7.
    ell_max = 1023
    coeffs = random_coefficients(rng, ell_max).astype(np.complex64)
    first, second = (0.3, 1.1, -0.7), (2.0, 0.4, 0.9)
    once = np.asarray(rotate_coefficients(coeffs, *first))
    assert once.dtype == np.complex64
    twice = np.asarray(rotate_coefficients(once, *second))
    product = Rotation.from_euler("ZYZ", second) * Rotation.from_euler("ZYZ", first)
    direct = np.asarray(rotate_coefficients(coeffs, *product.as_euler("ZYZ")))
    norms = degree_norms(coeffs)
    composition = (degree_norms(twice - direct) / norms).max()
    back = np.asarray(rotate_coefficients(once, 0.7, -1.1, -0.3))
    inverse = (degree_norms(back - coeffs) / norms).max()
    print(
        f"per-degree relative error: composition {composition:.1e}, "
        f"inverse {inverse:.1e}"
    )
    assert composition < 5e-7
    assert inverse < 5e-7
    # Rotations keep each degree's power (to the same rounding).
    np.testing.assert_allclose(degree_norms(once), norms, rtol=5e-7)


@pytest.mark.large
def test_rotation_at_1023_against_healpy(x64, rng):
    # As test_degree_by_degree_against_healpy at L = 1023, in float64. Tolerance: 1e-9
    # of each degree's norm (the two float64 recursions differ by ~1e-12 here).
    healpy = pytest.importorskip("healpy")
    ell_max = 1023
    coeffs = random_coefficients(rng, ell_max, real_field=True)
    angles = (0.3, 1.1, -0.7)
    ells, orders = healpy.Alm.getlm(ell_max)
    alm = coeffs[ells, ell_max + orders].copy()
    healpy.rotate_alm(alm, angles[2], angles[1], angles[0], lmax=ell_max)
    rotated = np.asarray(rotate_coefficients(coeffs, *angles))
    ours = np.zeros_like(coeffs)
    ours[ells, ell_max + orders] = rotated[ells, ell_max + orders]
    theirs = np.zeros_like(coeffs)
    theirs[ells, ell_max + orders] = alm
    error = (degree_norms(ours - theirs) / degree_norms(theirs)).max()
    print(f"per-degree relative difference from healpy: {error:.1e}")
    assert error < 1e-9
