"""HEALPix grids (RING ordering) and spherical harmonic transforms on them, via healpy.

`HealpixGrid` is one of the grids of ``regrid.py``; `healpix_analyse` and
`healpix_synthesise` are its transforms there, in float64 NumPy on the host, in the
coefficient layout (..., L + 1, 2L + 1) of ``wigner.py`` and ``sht.py``.

HEALPix analysis is not exact (no quadrature on HEALPix pixels integrates band-limited
products exactly): it is healpy's iterative analysis (``map2alm(..., iter=3)``, written
out so that spin 1 gets the same iterations), with `HealpixGrid.max_bandlimit` = 2 nside
and coefficient errors of a few 1e-5 there (measured, see `HealpixGrid`). Synthesis on
HEALPix is exact evaluation at the pixel centres.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["HEALPIX_ITERATIONS", "HealpixGrid", "healpix_analyse", "healpix_synthesise"]

# Jacobi iterations of HEALPix analysis (healpy's default iter=3).
HEALPIX_ITERATIONS = 3


@dataclasses.dataclass(frozen=True)
class HealpixGrid:
    """A HEALPix grid in RING ordering (needs healpy, an optional dependency).

    Pixel p has its centre at colatitude `theta`[p] and longitude `phi`[p]
    (``healpy.pix2ang``); fields on it have shape (..., npix), npix = 12 nside^2.

    `max_bandlimit` is 2 nside, the usual limit for accurate HEALPix analysis. No
    HEALPix quadrature is exact, so analysis iterates: a = A(f), then
    a += A(f - S(a)) three times, which is healpy's ``map2alm(..., iter=3)`` (equal to
    it to 2e-15 for spin 0). Measured with healpy 1.20 in float64, on fields with
    unit-variance random coefficients up to L (a flat spectrum, the hard case), as
    max |coefficient error| / max |coefficient|:

    ======  =========  ==========  ===========  =============
    nside   L = 8      L = nside   L = 2 nside  L = 3 nside - 1
    ======  =========  ==========  ===========  =============
    16      2e-9       1.5e-7      3e-5 - 5e-5  0.15 - 0.19
    32                 1e-7        3.5e-5
    64                 4e-8        1.2e-5
    ======  =========  ==========  ===========  =============

    (spins 0 and +-1 alike at nside 16; spin 0 only above). Fields with a red spectrum
    do better. Above 2 nside the error grows fast (5e-4 at 2.5 nside), which is why
    `regrid` refuses HEALPix sources above `max_bandlimit` as it does other grids.
    Synthesis on HEALPix is exact.

    Args:
        nside: HEALPix resolution parameter, >= 1 (any integer in RING ordering).

    Raises:
        ImportError: if healpy is not installed.
    """

    nside: int

    def __post_init__(self):
        if isinstance(self.nside, bool) or not isinstance(self.nside, int | np.integer):
            raise TypeError(
                f"HealpixGrid.nside must be an int. Received: nside={self.nside!r}"
            )
        if self.nside < 1:
            raise ValueError(
                f"HealpixGrid needs nside >= 1. Received: nside={self.nside}"
            )
        object.__setattr__(self, "nside", int(self.nside))
        _import_healpy()

    @property
    def npix(self) -> int:
        """Number of pixels, 12 nside^2."""
        return 12 * self.nside**2

    @property
    def shape(self) -> tuple[int]:
        """(npix,)."""
        return (self.npix,)

    @property
    def max_bandlimit(self) -> int:
        """2 nside: analysis errors of a few 1e-5 there (see the class docstring)."""
        return 2 * self.nside

    @property
    def theta(self) -> np.ndarray:
        """Colatitudes of the pixel centres in radians, float64, shape (npix,)."""
        return _import_healpy().pix2ang(self.nside, np.arange(self.npix))[0]

    @property
    def phi(self) -> np.ndarray:
        """Longitudes of the pixel centres in radians, float64, shape (npix,)."""
        return _import_healpy().pix2ang(self.nside, np.arange(self.npix))[1]

    @property
    def latitudes(self) -> np.ndarray:
        """Latitudes of the pixel centres in degrees north, float64, shape (npix,)."""
        return 90.0 - np.degrees(self.theta)

    @property
    def longitudes(self) -> np.ndarray:
        """Longitudes of the pixel centres in degrees east, float64, shape (npix,)."""
        return np.degrees(self.phi)

    def check_field_shape(self, shape: tuple[int, ...], what: str = "field") -> None:
        """Raise ValueError unless the last axis of `shape` is (npix,)."""
        if len(shape) < 1 or tuple(shape[-1:]) != self.shape:
            raise ValueError(
                f"The {what} must end with the pixel axis (npix,) = {self.shape} of "
                f"{self} (RING ordering). Received shape {tuple(shape)}."
            )


def _import_healpy():
    try:
        import healpy
    except ImportError as error:
        raise ImportError(
            "HEALPix grids need healpy, which is not installed. Install it with "
            '`pip install healpy` (or `pip install "keras-sphere[cmb]"`).'
        ) from error
    return healpy


def healpix_analyse(field, grid: HealpixGrid, spin: int, ell_max: int):
    """Iterative analysis: a = A(f), then a += A(f - S(a)), HEALPIX_ITERATIONS times.

    A is healpy's plain ring quadrature; the loop is healpy's own ``iter`` loop of
    ``map2alm``, written out so that spin 1 (whose ``map2alm_spin`` has no
    ``iter``) gets it too. `field`: complex (..., npix); returns complex
    coefficients (..., ell_max + 1, 2 ell_max + 1).
    """
    batch_shape = field.shape[:-1]
    maps = field.reshape(-1, grid.npix)
    out = np.empty((maps.shape[0], ell_max + 1, 2 * ell_max + 1), np.complex128)
    for index, values in enumerate(maps):
        coeffs = _healpix_analyse_once(values, grid, spin, ell_max)
        for _ in range(HEALPIX_ITERATIONS):
            residual = values - _healpix_synthesise_one(coeffs, grid, spin)
            coeffs = coeffs + _healpix_analyse_once(residual, grid, spin, ell_max)
        out[index] = coeffs
    return out.reshape(*batch_shape, ell_max + 1, 2 * ell_max + 1)


def healpix_synthesise(coeffs, grid: HealpixGrid, spin: int):
    """The field of coefficients (..., L + 1, 2L + 1) at the pixel centres.

    Exact evaluation (healpy's ``alm2map``); returns complex (..., npix).
    """
    ell_max = coeffs.shape[-2] - 1
    batch_shape = coeffs.shape[:-2]
    flat = coeffs.reshape(-1, ell_max + 1, 2 * ell_max + 1)
    out = np.empty((flat.shape[0], grid.npix), np.complex128)
    for index, a in enumerate(flat):
        out[index] = _healpix_synthesise_one(a, grid, spin)
    return out.reshape(*batch_shape, grid.npix)


def _healpy_orders(ell_max: int) -> tuple[np.ndarray, np.ndarray]:
    """(ell, m) of healpy's alm index (m >= 0, m-major), int arrays."""
    ell, m = _import_healpy().Alm.getlm(ell_max)
    return np.asarray(ell), np.asarray(m)


def _from_halves(plus: np.ndarray, minus: np.ndarray, ell_max: int) -> np.ndarray:
    """Padded layout from values at (ell, m) and (ell, -m), m >= 0 (healpy order)."""
    ell, m = _healpy_orders(ell_max)
    out = np.zeros((ell_max + 1, 2 * ell_max + 1), np.complex128)
    out[ell, ell_max - m] = minus
    out[ell, ell_max + m] = plus  # m = 0 last: both halves agree there
    return out


def _healpix_analyse_once(values, grid: HealpixGrid, spin: int, ell_max: int):
    """One plain healpy analysis of one map, in our convention; (L + 1, 2L + 1)."""
    healpy = _import_healpy()
    if spin == -1:  # u - i v is the conjugate of the spin +1 field u + i v
        return _conjugate(_healpix_analyse_once(np.conj(values), grid, 1, ell_max), 1)
    sign = (-1.0) ** _healpy_orders(ell_max)[1]
    if spin == 1:
        # healpy takes the real maps (Q, U) = (u, v) and returns (E, B). Measured
        # against our harmonics (and pinned by the gradient tests): for m >= 0,
        # a_ell,m = -(E + i B) and a_ell,-m = (-1)^(m+1) conj(E - i B).
        e, b = healpy.map2alm_spin(
            [values.real.copy(), values.imag.copy()], 1, lmax=ell_max, mmax=ell_max
        )
        plus = -(e + 1j * b)
        minus = -sign * (np.conj(e) + 1j * np.conj(b))
        return _from_halves(plus, minus, ell_max)
    # Spin 0: healpy's Y_ell,m are ours (scipy's). A complex field is two real ones,
    # each with a_ell,-m = (-1)^m conj(a_ell,m).
    out = np.zeros((ell_max + 1, 2 * ell_max + 1), np.complex128)
    for part, factor in ((values.real, 1.0), (values.imag, 1j)):
        if factor == 1j and not np.any(part):
            continue
        alm = healpy.map2alm(
            np.ascontiguousarray(part), lmax=ell_max, mmax=ell_max, iter=0, pol=False
        )
        out += factor * _from_halves(alm, sign * np.conj(alm), ell_max)
    return out


def _healpix_synthesise_one(coeffs, grid: HealpixGrid, spin: int):
    """Exact synthesis of one (L + 1, 2L + 1) coefficient set on HEALPix; (npix,)."""
    healpy = _import_healpy()
    if spin == -1:
        return np.conj(_healpix_synthesise_one(_conjugate(coeffs, -1), grid, 1))
    ell_max = coeffs.shape[-2] - 1
    ell, m = _healpy_orders(ell_max)
    plus = coeffs[ell, ell_max + m]  # a_ell,m for m >= 0
    mirrored = (-1.0) ** m * np.conj(coeffs[ell, ell_max - m])  # (-1)^m conj(a_ell,-m)
    if spin == 1:
        # The inverse of the analysis mapping: with a+ = a_ell,m = -(E + i B) and
        # a- = -mirrored = E - i B, E = (a- - a+) / 2 and B = i (a+ + a-) / 2.
        e = (-mirrored - plus) / 2
        b = 1j * (plus - mirrored) / 2
        q, u = healpy.alm2map_spin([e, b], grid.nside, 1, ell_max, mmax=ell_max)
        return q + 1j * u
    # Spin 0: the real and imaginary parts of the field have the coefficients
    # (a+ + mirrored) / 2 and (a+ - mirrored) / 2i at m >= 0.
    parts = ((plus + mirrored) / 2, (plus - mirrored) / 2j)
    real, imag = (
        healpy.alm2map(part, grid.nside, lmax=ell_max, mmax=ell_max, pol=False)
        for part in parts
    )
    return real + 1j * imag


def _conjugate(coeffs: np.ndarray, spin: int) -> np.ndarray:
    """Coefficients of the conjugate field (spin -s): (-1)^(m + s) conj(a_ell,-m)."""
    ell_max = coeffs.shape[-2] - 1
    m = np.arange(-ell_max, ell_max + 1)
    return (-1.0) ** (m + spin) * np.conj(coeffs[..., ::-1])
