"""Tests of the simulated CMB data set (`keras_sphere.data.cmb`).

All simulator settings use the default seed, so every statistical check below is
deterministic; the tolerances are still chosen from the statistics of the estimators
(stated at each check), not tuned to the particular draw.
"""

import contextlib

import jax
import numpy as np
import pytest
from sympy.physics.wigner import wigner_3j

from keras_sphere.data import cmb
from keras_sphere.sphere import Grid
from keras_sphere.sphere import isht
from keras_sphere.sphere import sht


def relative_error(actual, expected):
    return np.abs(np.asarray(actual) - expected).max() / np.abs(expected).max()


@contextlib.contextmanager
def float64():
    """JAX float64 mode for an independent reference, restored afterwards (the module
    under test always runs with the default float32 setting)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


def padded_from_healpix_alm(alm, ell_max):
    """healpy's m >= 0 alm to our padded layout [ell, L + m] of a real field."""
    import healpy

    ell, order = healpy.Alm.getlm(ell_max)
    coeffs = np.zeros((ell_max + 1, 2 * ell_max + 1), np.complex128)
    coeffs[ell, ell_max + order] = alm
    positive = order > 0
    coeffs[ell[positive], ell_max - order[positive]] = (-1.0) ** order[
        positive
    ] * np.conj(alm[positive])
    return coeffs


# --- the stored spectrum ----------------------------------------------------------


def test_power_spectrum_values():
    cl = cmb.power_spectrum(3000)
    assert cl.shape == (3001,) and cl.dtype == np.float64
    assert cl[0] == 0.0 and cl[1] == 0.0
    assert np.all(cl[2:] > 0)
    ell = np.arange(cl.size)
    d_ell = ell * (ell + 1) * cl / (2 * np.pi)
    # Planck 2018 LCDM: first acoustic peak at ell ~ 220 with D_ell ~ 5730 uK^2
    # (stored: ell = 220, 5732.45 uK^2).
    assert 215 <= np.argmax(d_ell) <= 225
    assert 5700 < d_ell.max() < 5760
    # Shorter requests are prefixes, and copies (the cached table stays intact).
    short = cmb.power_spectrum(31)
    np.testing.assert_array_equal(short, cl[:32])
    short[:] = -1.0
    assert cmb.power_spectrum(31)[2] == cl[2]


# --- quadratic_spectrum against the Wigner-3j formula -----------------------------


def test_quadratic_spectrum_matches_wigner_3j(rng):
    # For Gaussian g with spectrum C_ell (ell <= L), q = g^2 - <g^2> has, by Wick,
    # C^q_L' = 2 sum_{l1,l2} (2 l1 + 1)(2 l2 + 1)/(4 pi) C_l1 C_l2 (l1 l2 L'; 0 0 0)^2.
    # Evaluated here with sympy's exact 3j symbols for L' <= L, in float64: the two
    # computations differ only by rounding (measured 1.5e-14), so 1e-12 relative.
    ell_max = 8
    ell = np.arange(ell_max + 1)
    cl = rng.uniform(0.5, 2.0, ell_max + 1) / (1.0 + ell) ** 2  # C_0 != 0 included
    expected = np.zeros(ell_max + 1)
    for big in range(ell_max + 1):
        for l1 in range(ell_max + 1):
            for l2 in range(abs(big - l1), min(ell_max, big + l1) + 1):
                symbol = float(wigner_3j(l1, l2, big, 0, 0, 0))
                expected[big] += (
                    (2 * l1 + 1) * (2 * l2 + 1) / (4 * np.pi) * cl[l1] * cl[l2]
                ) * symbol**2
    expected *= 2.0
    actual = cmb.quadratic_spectrum(cl)
    assert actual.shape == (ell_max + 1,) and actual.dtype == np.float64
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=0)
    # Units: scaling C_ell by s scales C^q by s^2.
    np.testing.assert_allclose(
        cmb.quadratic_spectrum(3.0 * cl), 9.0 * expected, rtol=1e-12, atol=0
    )


# --- the non-Gaussian projection is exact -----------------------------------------


def test_non_gaussian_projection_is_exact():
    # Map 1 (non-Gaussian) recomputed in float64 on a 4x finer grid than the model grid
    # (128 x 128 at L = 15, projection of g^2 exact there by a wide margin). The
    # simulator works in float32 on its 3 (L + 1) grid: measured 1.6e-7 relative, i.e.
    # float32 rounding; 1e-5 leaves a margin yet is far below the aliasing error of a
    # grid that is too coarse (measured: 1.4e-3 on 3L x 3L, 5.5e-2 on the model grid,
    # checked below so that this comparison is shown to be able to fail).
    ell_max = 15
    simulator = cmb.CMBSimulator(ell_max=ell_max, alpha=0.3)
    coeffs, labels = simulator.coefficients("train", [1])
    assert labels.tolist() == [1]

    def recompute(grid):
        draw = cmb._gaussian_coefficients(simulator.cl, simulator.rng("train", 1))
        with float64():
            g = np.asarray(isht(draw / simulator.sigma, grid, is_real=True))
            assert g.dtype == np.float64
            h = g + simulator.alpha * (g * g - 1.0)
            projected = np.asarray(sht(h, grid, lmax=ell_max))
        return projected * simulator.matching_filter[:, None]

    n_fine = 8 * (ell_max + 1)
    expected = recompute(Grid(n_fine, n_fine))
    assert relative_error(coeffs[0], expected) < 1e-5
    assert relative_error(recompute(Grid(3 * ell_max, 3 * ell_max)), expected) > 1e-4
    assert relative_error(recompute(Grid.for_bandlimit(ell_max)), expected) > 1e-2
    # The result is the padded layout of a real field without monopole and dipole.
    order = np.arange(-ell_max, ell_max + 1)
    mirrored = (-1.0) ** order * np.conj(coeffs[0][:, ::-1])
    np.testing.assert_allclose(
        mirrored, coeffs[0], rtol=0, atol=1e-6 * np.abs(expected).max()
    )
    assert np.all(coeffs[0][:2] == 0)


# --- spectra and skewness of the two classes --------------------------------------

N_PER_CLASS = 40


@pytest.fixture(scope="module")
def sample():
    """40 Gaussian and 40 non-Gaussian maps at L = 31 with a strong quadratic term."""
    simulator = cmb.CMBSimulator(ell_max=31, alpha=0.5)
    coeffs, labels = simulator.coefficients("train", np.arange(2 * N_PER_CLASS))
    maps = simulator.synthesise(coeffs)
    return simulator, coeffs, labels, maps


def mean_square_deviation(spectrum, target, n_maps):
    """Mean over ell = 2 ... L of squared deviations in cosmic-variance units.

    The mean of n Gaussian C^_ell has standard error sqrt(2 / ((2 ell + 1) n)) C_ell.
    """
    ell = np.arange(target.size)[2:]
    error = np.sqrt(2.0 / ((2 * ell + 1) * n_maps)) * target[2:]
    return float(np.mean(((spectrum[2:] - target[2:]) / error) ** 2))


def test_spectra_match_target_within_cosmic_variance(sample):
    simulator, coeffs, labels, _ = sample
    assert labels.tolist() == [0, 1] * N_PER_CLASS
    spectra = cmb.empirical_spectrum(coeffs)
    assert spectra.shape == (2 * N_PER_CLASS, 32)
    gaussian = spectra[labels == 0].mean(axis=0)
    non_gaussian = spectra[labels == 1].mean(axis=0)
    # Gaussian class: the statistic is chi^2_30 / 30, whose 99.9% quantile is 1.99,
    # hence < 2 (this draw: 1.71).
    assert mean_square_deviation(gaussian, simulator.cl, N_PER_CLASS) < 2.0
    # Non-Gaussian class: the connected four-point function raises the variance of
    # C^_ell ~1.27x (measured on 1000 maps) and correlates the degrees (~0.16), so
    # the statistic has mean ~1.2 and a longer tail (max 2.24 over 25 independent
    # groups of 40 maps): < 2.5 (this draw: 0.70).
    assert mean_square_deviation(non_gaussian, simulator.cl, N_PER_CLASS) < 2.5

    # The test can fail: without the matching filter the non-Gaussian spectrum is
    # C_ell + alpha^2 sigma^2 C^q_ell (measured statistic ~300) ...
    ratio = simulator.matching_filter[2:] / simulator.sigma
    assert np.max(np.abs(ratio - 1.0)) > 0.2  # measured 0.247
    unfiltered = non_gaussian.copy()
    unfiltered[2:] /= ratio**2
    assert mean_square_deviation(unfiltered, simulator.cl, N_PER_CLASS) > 50.0
    # ... which is what the filter removes, exactly in expectation (this draw: 0.70).
    unit = simulator.cl / simulator.sigma**2
    expected_unfiltered = simulator.sigma**2 * (
        unit + simulator.alpha**2 * cmb.quadratic_spectrum(unit)
    )
    assert mean_square_deviation(unfiltered, expected_unfiltered, N_PER_CLASS) < 2.5


def test_classes_have_matched_spectra_and_differ_in_skewness(sample):
    simulator, coeffs, labels, maps = sample
    spectra = cmb.empirical_spectrum(coeffs)
    gaussian = spectra[labels == 0].mean(axis=0)
    non_gaussian = spectra[labels == 1].mean(axis=0)
    # Difference of two independent means: variance (1/n + 1/n) in cosmic-variance
    # units, i.e. the statistic below with n / 2 maps. Bound 2.5 as in the previous
    # test (non-Gaussian variance ~1.27x; this draw: 1.01).
    assert (
        mean_square_deviation(
            gaussian - non_gaussian + simulator.cl, simulator.cl, N_PER_CLASS / 2
        )
        < 2.5
    )

    assert maps.shape == (2 * N_PER_CLASS, 64, 64) and maps.dtype == np.float32
    skewness = cmb.map_skewness(maps, simulator.grid)
    assert skewness.shape == (2 * N_PER_CLASS,)
    # Gaussian maps: per-map skewness 0 +- 0.10 (measured spread; large because the
    # CMB power sits at low ell), so the mean of 40 is 0 +- 0.016: |mean| < 0.1
    # (this draw: 0.03). Non-Gaussian, alpha = 0.5: pointwise skewness of
    # g + alpha (g^2 - 1) is (6 alpha + 8 alpha^3) / (1 + 2 alpha^2)^1.5 = 2.18,
    # reduced by the filter and the projection to 1.81 +- 0.23 per map here.
    assert abs(skewness[labels == 0].mean()) < 0.1
    assert skewness[labels == 1].mean() > 1.0
    # Every map is classified by its skewness alone here (min 1.35 vs max 0.18).
    assert skewness[labels == 1].min() > skewness[labels == 0].max()


# --- determinism and labels -------------------------------------------------------


def test_maps_are_deterministic_per_split_and_index():
    simulator = cmb.CMBSimulator(ell_max=7, alpha=0.3)
    again = cmb.CMBSimulator(ell_max=7, alpha=0.3)
    for index in (4, 5):  # one map of each class
        coeffs, _ = simulator.coefficients("train", [index])
        np.testing.assert_array_equal(again.coefficients("train", [index])[0], coeffs)
        np.testing.assert_array_equal(
            again.maps("train", [index])[0], simulator.maps("train", [index])[0]
        )
        for split, other in (("validation", index), ("test", index), ("train", 6)):
            assert not np.allclose(
                simulator.coefficients(split, [other])[0], coeffs, rtol=0.1
            )
    # Another seed gives other maps.
    other_seed = cmb.CMBSimulator(ell_max=7, alpha=0.3, seed=1)
    assert not np.allclose(
        other_seed.coefficients("train", [4])[0],
        simulator.coefficients("train", [4])[0],
        rtol=0.1,
    )

    # A map generated alone equals the same map generated in a batch; the batched
    # float32 transforms may round differently, so allow a few float32 ulps of the
    # map's scale (measured: identical).
    alone, alone_labels = simulator.maps("train", [3])
    batch, batch_labels = simulator.maps("train", [0, 1, 2, 3])
    np.testing.assert_allclose(
        batch[3], alone[0], rtol=0, atol=1e-6 * np.abs(alone).max()
    )
    assert alone_labels.tolist() == [1]
    assert batch_labels.tolist() == [0, 1, 0, 1]
    assert batch_labels.dtype == np.int32
    assert [cmb.CMBSimulator.label(i) for i in range(5)] == [0, 1, 0, 1, 0]


# --- generate and its cache -------------------------------------------------------


def test_generate_resumes_from_cache(tmp_path):
    simulator = cmb.CMBSimulator(ell_max=7, alpha=0.3)
    n_maps, batch_size = 9, 2  # batches start at 0, 2, 4, 6, 8 (the last holds 1)
    reference = cmb.generate(
        simulator,
        "train",
        n_maps,
        outputs={
            "spectrum": lambda maps, coeffs: cmb.empirical_spectrum(coeffs),
            "maps": lambda maps, coeffs: maps,
        },
        batch_size=batch_size,
        verbose=0,
    )
    assert sorted(reference) == ["labels", "maps", "spectrum"]
    maps, labels = simulator.maps("train", np.arange(n_maps))
    np.testing.assert_array_equal(reference["labels"], labels)
    # Batches of 2 and of 9 may round differently in float32.
    np.testing.assert_allclose(
        reference["maps"], maps, rtol=0, atol=1e-6 * np.abs(maps).max()
    )

    calls = []  # the first map index of every batch the output function sees

    def spectrum(maps, coeffs, fail_at=None):
        power = cmb.empirical_spectrum(coeffs)
        row = int(np.flatnonzero(np.all(reference["spectrum"] == power[0], axis=1))[0])
        calls.append(row)
        if len(calls) == fail_at:
            raise RuntimeError("interrupted")
        return power

    def run(fail_at=None):
        return cmb.generate(
            simulator,
            "train",
            n_maps,
            outputs={
                "spectrum": lambda m, c: spectrum(m, c, fail_at),
                "maps": lambda maps, coeffs: maps,
            },
            cache_dir=tmp_path,
            batch_size=batch_size,
            verbose=0,
        )

    with pytest.raises(RuntimeError, match="interrupted"):
        run(fail_at=3)  # batches 0 and 2 finish, batch 4 fails
    assert calls == [0, 2, 4]
    assert cmb.read_record(tmp_path)["done"] == 4

    calls.clear()
    result = run()
    # Resuming reads the output shapes from the record: no finished batch reruns.
    assert calls == [4, 6, 8]
    for name in ("labels", "maps", "spectrum"):
        np.testing.assert_array_equal(result[name], reference[name])

    record = cmb.read_record(tmp_path)
    assert record == {
        "format": 1,
        "simulator": {"ell_max": 7, "alpha": 0.3, "seed": 2022},
        "split": "train",
        "outputs": {
            "spectrum": [[9, 8], "<f8"],
            "maps": [[9, 16, 16], "<f4"],
            "labels": [[9], "<i4"],
        },
        "done": 9,
    }

    # A finished cache is read back without running any batch.
    calls.clear()
    np.testing.assert_array_equal(run()["spectrum"], reference["spectrum"])
    assert calls == []

    # Other settings never mix with the cache.
    with pytest.raises(ValueError, match="other data or settings"):
        cmb.generate(
            cmb.CMBSimulator(ell_max=7, alpha=0.2),
            "train",
            n_maps,
            outputs={"spectrum": lambda maps, coeffs: cmb.empirical_spectrum(coeffs)},
            cache_dir=tmp_path,
            batch_size=batch_size,
            verbose=0,
        )
    with pytest.raises(ValueError, match="other data or settings"):
        cmb.generate(
            simulator,
            "validation",
            n_maps,
            outputs={"spectrum": lambda maps, coeffs: cmb.empirical_spectrum(coeffs)},
            cache_dir=tmp_path,
            batch_size=batch_size,
            verbose=0,
        )


# --- errors -----------------------------------------------------------------------


def test_errors():
    simulator = cmb.CMBSimulator(ell_max=3, alpha=0.1)
    with pytest.raises(ValueError, match="split must be one of"):
        simulator.coefficients("training", [0])
    with pytest.raises(ValueError, match="index must be an integer >= 0"):
        simulator.coefficients("train", [-1])
    with pytest.raises(ValueError, match="index must be an integer >= 0"):
        simulator.coefficients("train", [3.5])
    maps, labels = simulator.maps("train", [])  # an empty request is not an error
    assert maps.shape == (0, 8, 8) and labels.shape == (0,)
    with pytest.raises(ValueError, match="ell_max <= 3000"):
        cmb.power_spectrum(5000)
    with pytest.raises(ValueError, match="ell_max <= 3000"):
        cmb.CMBSimulator(ell_max=5000)
    with pytest.raises(ValueError, match="ell_max must be >= 2"):
        cmb.CMBSimulator(ell_max=1)
    with pytest.raises(ValueError, match="alpha must be finite"):
        cmb.CMBSimulator(ell_max=3, alpha=float("nan"))
    with pytest.raises(ValueError, match="n_maps must be >= 1"):
        cmb.generate(simulator, "train", 0, verbose=0)
    with pytest.raises(ValueError, match="'labels' is always produced"):
        cmb.generate(
            simulator, "train", 2, outputs={"labels": lambda m, c: m}, verbose=0
        )


# --- from_healpix -----------------------------------------------------------------


def test_from_healpix(rng):
    healpy = pytest.importorskip("healpy")
    ell_max, nside = 15, 32
    ell, order = healpy.Alm.getlm(ell_max)
    alm = rng.standard_normal(ell.size) + 1j * rng.standard_normal(ell.size)
    alm[order == 0] = alm[order == 0].real
    healpix_map = healpy.alm2map(alm, nside, lmax=ell_max)
    coeffs = padded_from_healpix_alm(alm, ell_max)
    with float64():
        expected = np.asarray(isht(coeffs, Grid.for_bandlimit(ell_max), is_real=True))
    assert expected.dtype == np.float64

    result = cmb.from_healpix(healpix_map, ell_max)
    assert result.shape == (32, 32) and result.dtype == np.float32
    # HEALPix analysis with iter=3 recovers these alm to 3.4e-10 (measured; iter=0:
    # 8e-4), far below float32 rounding, so the error is the float32 synthesis
    # (measured ~1e-7 relative): 3e-7.
    assert relative_error(result, expected) < 3e-7
    # The tolerance resolves HEALPix's approximation: without iterations it fails.
    assert relative_error(cmb.from_healpix(healpix_map, ell_max, 0), expected) > 1e-5

    stacked = cmb.from_healpix(np.stack([healpix_map, 2.0 * healpix_map]), ell_max)
    assert stacked.shape == (2, 32, 32)
    np.testing.assert_allclose(stacked[1], 2.0 * result, rtol=1e-6, atol=1e-6)

    # Masked pixels: the message gives the pixels of one map, the maps of a stack.
    masked = r"at \[5\]\. NaN, infinite and UNSEEN pixels cannot be analysed: inpaint"
    with pytest.raises(ValueError, match=masked):
        cmb.from_healpix(np.where(np.arange(healpix_map.size) == 5, np.nan, 1.0), 15)
    with pytest.raises(ValueError, match=masked):
        cmb.from_healpix(
            np.where(np.arange(healpix_map.size) == 5, healpy.UNSEEN, 1.0), 15
        )
    stack = np.stack([healpix_map, healpix_map, healpix_map])
    stack[2, 7] = np.inf
    with pytest.raises(ValueError, match=r"in 1 of 3 examples, at indices \[2\]"):
        cmb.from_healpix(stack, ell_max)
    with pytest.raises(ValueError, match="12 nside"):
        cmb.from_healpix(healpix_map[:-1], ell_max)
    with pytest.raises(ValueError, match="3 nside - 1"):
        cmb.from_healpix(healpix_map, 3 * nside)


def test_healpix_alm_round_trip(rng):
    from keras_sphere.testing import random_coefficients

    coeffs = random_coefficients(rng, 12, real_field=True)
    alm = cmb.to_healpix_alm(coeffs)
    assert alm.size == (13 * 14) // 2  # healpy's lmax = mmax = 12 layout
    np.testing.assert_array_equal(cmb.from_healpix_alm(alm), coeffs)
    with pytest.raises(ValueError, match="not a healpy array"):
        cmb.from_healpix_alm(alm[:-1])
    alm[3] = np.nan
    with pytest.raises(ValueError, match=r"alm has 1 non-finite value .* at \[3\]"):
        cmb.from_healpix_alm(alm)


def test_user_arrays_with_nan_are_refused_naming_the_maps():
    simulator = cmb.CMBSimulator(ell_max=3, alpha=0.1)
    coeffs, _ = simulator.coefficients("train", [0, 1, 2])
    coeffs[1, 2, 3] = np.nan
    message = r"coeffs has NaN or infinite values .* at indices \[1\] along axis 0"
    with pytest.raises(ValueError, match=message):
        simulator.synthesise(coeffs)
    with pytest.raises(ValueError, match=message):
        cmb.empirical_spectrum(coeffs)
    maps = simulator.maps("train", [0, 1, 2])[0].copy()
    maps[0, 4, 4] = np.inf
    with pytest.raises(ValueError, match=r"maps has .* at indices \[0\] along axis 0"):
        cmb.map_skewness(maps, simulator.grid)
