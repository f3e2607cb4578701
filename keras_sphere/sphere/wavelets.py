"""Axisymmetric scale-discretised wavelets on the sphere (S2LET construction).

Notation (``scattering.md`` sections 1-2): L is the inclusive bandlimit of the
signal and B = L + 1 the exclusive one; lam > 1 is the dilation factor, J the finest
scale (the smallest integer with lam^J >= B) and J0 (0 <= J0 < J) the coarsest wavelet
scale.

* Bump s(x) = exp(-1 / (1 - x^2)) on |x| < 1, rescaled to [1/lam, 1]:
  s_lam(t) = s(2 lam / (lam - 1) (t - 1/lam) - 1).
* Smooth step k_lam(t) = int_t^1 s_lam(u)^2 du / u  /  int_{1/lam}^1 s_lam(u)^2 du / u:
  1 for t <= 1/lam, 0 for t >= 1 (adaptive quadrature in float64).
* Wavelet kernel of scale j: kappa_j(ell) = sqrt(k_lam(ell / lam^(j+1)) -
  k_lam(ell / lam^j)), supported on lam^(j-1) < ell < lam^(j+1), peak 1 at lam^j.
* Scaling kernel: phi(ell) = sqrt(k_lam(ell / lam^J0)), supported on ell < lam^J0.

The kernels tile the harmonic line: phi(ell)^2 + sum_{j=J0}^{J} kappa_j(ell)^2 = 1 for
every ell < B (the sum telescopes to k_lam(ell / lam^(J+1)) = 1, whatever quadrature
defines k_lam), so the wavelet transform is a Parseval frame: it conserves energy and
is inverted exactly by applying the kernels a second time and summing.

Axisymmetric convolution multiplies coefficients by a real factor per degree:
W^j_ell,m = kappa_j(ell) f_ell,m, W^phi_ell,m = phi(ell) f_ell,m. That commutes with
rotations, so the wavelet transform is exactly equivariant. Scale j is band-limited at
ell < B_j = min(ceil(lam^(j+1)), B) (for j = 0 the j = 1 value, as in s2wav) and the
scaling map at ell < B_phi = min(ceil(lam^J0), B); each map is sampled on the model grid
of its own bandlimit (``Grid.for_bandlimit``), so coarse scales are cheap.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax.numpy as jnp
import numpy as np
from scipy import integrate

from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.sht import isht
from keras_sphere.sphere.sht import pad
from keras_sphere.sphere.sht import sht
from keras_sphere.sphere.sht import truncate

__all__ = [
    "WaveletFilterBank",
    "apply_kernel",
    "finest_scale",
    "inverse_wavelet_transform",
    "map_grid",
    "scaling_generator",
    "smooth_step",
    "wavelet_filters",
    "wavelet_generator",
    "wavelet_transform",
]


def _check_dilation(lam: float) -> float:
    lam = float(lam)
    if not lam > 1.0 or not math.isfinite(lam):
        raise ValueError(f"The dilation lam must be a number > 1. Received: lam={lam}")
    return lam


def finest_scale(ell_max: int, lam: float = 2.0) -> int:
    """J: the smallest integer with lam^J >= ell_max + 1 (the finest wavelet scale).

    Example:
        >>> finest_scale(63), finest_scale(1023), finest_scale(30)
        (6, 10, 5)
    """
    lam = _check_dilation(lam)
    bandlimit = int(ell_max) + 1
    scale = 0
    while lam**scale < bandlimit:
        scale += 1
    return scale


def _squared_bump(u: float, lam: float) -> float:
    """s_lam(u)^2 / u, the integrand of the smooth step."""
    x = 2.0 * lam / (lam - 1.0) * (u - 1.0 / lam) - 1.0
    if abs(x) >= 1.0:
        return 0.0
    return math.exp(-2.0 / (1.0 - x * x)) / u


@functools.cache
def _bump_integral(lower: float, lam: float) -> float:
    value, _ = integrate.quad(
        _squared_bump, lower, 1.0, args=(lam,), epsabs=0.0, epsrel=1e-13, limit=200
    )
    return value


def smooth_step(t, lam: float = 2.0) -> np.ndarray:
    """k_lam(t): 1 for t <= 1/lam, 0 for t >= 1, smooth and decreasing between.

    Args:
        t: array of non-negative reals.
        lam: dilation factor > 1.

    Returns:
        float64 array of the shape of `t`.
    """
    lam = _check_dilation(lam)
    t = np.asarray(t, dtype=np.float64)
    out = np.where(t <= 1.0 / lam, 1.0, 0.0)
    inside = (t > 1.0 / lam) & (t < 1.0)
    if np.any(inside):
        norm = _bump_integral(1.0 / lam, lam)
        values = [_bump_integral(float(u), lam) / norm for u in t[inside]]
        out[inside] = values
    return out


def wavelet_generator(t, lam: float = 2.0) -> np.ndarray:
    """kappa_lam(t) = sqrt(k_lam(t / lam) - k_lam(t)): support (1/lam, lam), peak 1."""
    difference = smooth_step(np.asarray(t) / lam, lam) - smooth_step(t, lam)
    return np.sqrt(np.clip(difference, 0.0, None))


def scaling_generator(t, lam: float = 2.0) -> np.ndarray:
    """eta_lam(t) = sqrt(k_lam(t)): 1 for t <= 1/lam, support t < 1."""
    return np.sqrt(smooth_step(t, lam))


def map_grid(ell_max: int) -> Grid:
    """The grid a wavelet, scaling or scattering map of bandlimit `ell_max` lives on.

    The model grid n x n with n = 2 (ell_max + 1), but at least 4 x 4 (a grid needs a
    row between its poles), so a constant map (ell_max = 0) is sampled on 4 x 4.
    """
    return Grid.for_bandlimit(max(int(ell_max), 1))


@dataclasses.dataclass(frozen=True)
class WaveletFilterBank:
    """The scaling and wavelet kernels per degree for one (ell_max, J0, lam).

    Make one with `wavelet_filters`.

    Attributes:
        ell_max: inclusive bandlimit L of the signal.
        J0: coarsest wavelet scale.
        lam: dilation factor.
        J: finest scale, `finest_scale(ell_max, lam)`.
        scales: (J0, ..., J).
        scaling: float64, shape (L + 1,): phi(ell).
        wavelets: float64, shape (J - J0 + 1, L + 1): kappa_j(ell), row j - J0.
        scale_bandlimits: inclusive bandlimit of each scale's map, B_j - 1.
        scaling_bandlimit: inclusive bandlimit of the scaling map, B_phi - 1.
    """

    ell_max: int
    J0: int
    lam: float
    J: int
    scaling: np.ndarray = dataclasses.field(repr=False, compare=False)
    wavelets: np.ndarray = dataclasses.field(repr=False, compare=False)

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(range(self.J0, self.J + 1))

    @property
    def scale_bandlimits(self) -> tuple[int, ...]:
        bandlimit = self.ell_max + 1
        return tuple(
            min(math.ceil(self.lam ** (max(j, 1) + 1) - 1e-9), bandlimit) - 1
            for j in self.scales
        )

    @property
    def scaling_bandlimit(self) -> int:
        return min(math.ceil(self.lam**self.J0 - 1e-9), self.ell_max + 1) - 1

    def kernel(self, scale: int) -> np.ndarray:
        """kappa_scale(ell), float64, shape (L + 1,)."""
        if scale not in self.scales:
            raise ValueError(
                f"scale must be one of {self.scales}. Received: scale={scale}"
            )
        return self.wavelets[scale - self.J0]

    def admissibility(self) -> np.ndarray:
        """phi(ell)^2 + sum_j kappa_j(ell)^2 for every ell (1 for a Parseval frame)."""
        return self.scaling**2 + np.sum(self.wavelets**2, axis=0)


def wavelet_filters(ell_max: int, J0: int, lam: float = 2.0) -> WaveletFilterBank:  # noqa: N803
    """The axisymmetric scaling and wavelet kernels of bandlimit `ell_max`.

    Args:
        ell_max: inclusive bandlimit L >= 1 of the signals to analyse.
        J0: coarsest wavelet scale, 0 <= J0 < J = `finest_scale(ell_max, lam)`.
        lam: dilation factor > 1 (2: dyadic).

    Returns:
        A `WaveletFilterBank` (cached).

    Raises:
        ValueError: if J0 is negative or not below J (the signal is too coarse for
            that scale: it has no degree above lam^J0).

    Example:
        >>> bank = wavelet_filters(63, J0=4)
        >>> bank.scales, bank.scale_bandlimits, bank.scaling_bandlimit
        ((4, 5, 6), (31, 63, 63), 15)
    """
    return _wavelet_filters(int(ell_max), int(J0), _check_dilation(lam))


@functools.lru_cache(maxsize=64)
def _wavelet_filters(ell_max: int, J0: int, lam: float) -> WaveletFilterBank:  # noqa: N803
    if ell_max < 1:
        raise ValueError(
            f"Wavelets need a bandlimit ell_max >= 1. Received: ell_max={ell_max}"
        )
    finest = finest_scale(ell_max, lam)
    if not 0 <= J0 < finest:
        raise ValueError(
            f"J0 must satisfy 0 <= J0 < J = {finest} for bandlimit L = {ell_max} and "
            f"lam = {lam} (scale J0 needs degrees up to lam^J0 < L + 1). Received: "
            f"J0={J0}. Lower J0 or use maps of a higher resolution: J0 = {J0} needs "
            f"L >= {math.ceil(lam**J0 - 1e-9)} (a grid of at least "
            f"{2 * (math.ceil(lam**J0 - 1e-9) + 1)} x "
            f"{2 * (math.ceil(lam**J0 - 1e-9) + 1)})."
        )
    ell = np.arange(ell_max + 1, dtype=np.float64)
    # steps[i] = k_lam(ell / lam^(J0 + i)), i = 0..J - J0 + 1: adjacent scales share
    # values, so the admissibility sum telescopes exactly.
    steps = np.stack([smooth_step(ell / lam**j, lam) for j in range(J0, finest + 2)])
    scaling = np.sqrt(steps[0])
    wavelets = np.sqrt(np.clip(steps[1:] - steps[:-1], 0.0, None))
    scaling.setflags(write=False)
    wavelets.setflags(write=False)
    return WaveletFilterBank(ell_max, J0, lam, finest, scaling, wavelets)


def _coefficients(field, grid: Grid, ell_max: int):
    return sht(field, grid, 0, ell_max)


def apply_kernel(coeffs, kernel: np.ndarray, ell_max: int):
    """Axisymmetric filtering: coefficients cut to degree `ell_max`, times kernel[ell].

    Args:
        coeffs: complex, padded layout (..., L + 1, 2L + 1), L >= ell_max.
        kernel: real kernel per degree (float64, at least ell_max + 1 entries); cast to
            the precision of `coeffs`.
        ell_max: inclusive degree to keep.

    Returns:
        complex, (..., ell_max + 1, 2 ell_max + 1).
    """
    part = truncate(coeffs, ell_max)
    factor = jnp.asarray(kernel[: ell_max + 1]).astype(part.real.dtype)
    return part * factor[:, None]


def wavelet_transform(
    field,
    grid: Grid,
    J0: int,  # noqa: N803
    lam: float = 2.0,
    ell_max: int | None = None,
):
    """Forward axisymmetric wavelet transform, each scale at its own bandlimit.

    Args:
        field: spin-0 field, shape (..., n_lat, n_lon) on `grid`, real or complex.
        grid: the `Grid` of `field`.
        J0: coarsest wavelet scale (see `wavelet_filters`).
        lam: dilation factor.
        ell_max: bandlimit L of the analysis; default `grid.max_bandlimit`.

    Returns:
        (scaling_map, wavelet_maps): the scaling map, shape (..., n_phi, n_phi) on
        `map_grid(B_phi - 1)`, and a tuple of one map per scale J0..J, shape
        (..., n_j, n_j) on `map_grid(B_j - 1)`. Real for real input.

    Example:
        >>> import numpy as np
        >>> grid = Grid.for_bandlimit(31)
        >>> low, maps = wavelet_transform(np.ones((64, 64)), grid, J0=2)
        >>> low.shape, [m.shape for m in maps]
        ((8, 8), [(16, 16), (32, 32), (64, 64), (64, 64)])
    """
    ell_max = grid.max_bandlimit if ell_max is None else int(ell_max)
    bank = wavelet_filters(ell_max, J0, lam)
    field = jnp.asarray(field)
    is_real = not jnp.issubdtype(field.dtype, jnp.complexfloating)
    coeffs = _coefficients(field, grid, ell_max)

    def synthesise(kernel, band):
        part = apply_kernel(coeffs, kernel, band)
        if band == 0:
            part = jnp.pad(part, [(0, 0)] * (part.ndim - 2) + [(0, 1), (1, 1)])
        return isht(part, map_grid(band), 0, is_real=is_real)

    scaling_map = synthesise(bank.scaling, bank.scaling_bandlimit)
    wavelet_maps = tuple(
        synthesise(bank.kernel(j), band)
        for j, band in zip(bank.scales, bank.scale_bandlimits, strict=True)
    )
    return scaling_map, wavelet_maps


def inverse_wavelet_transform(
    scaling_map,
    wavelet_maps,
    J0: int,  # noqa: N803
    lam: float = 2.0,
    ell_max: int | None = None,
    grid: Grid | None = None,
):
    """Exact inverse of `wavelet_transform`.

    f_ell,m = phi(ell) W^phi_ell,m + sum_j kappa_j(ell) W^j_ell,m, with each map's
    coefficients taken on its own grid.

    Args:
        scaling_map: the scaling map returned by `wavelet_transform`.
        wavelet_maps: the wavelet maps returned by `wavelet_transform`.
        J0: coarsest wavelet scale given to `wavelet_transform`.
        lam: dilation factor given to `wavelet_transform`.
        ell_max: bandlimit L of the analysis; default: that of the finest map.
        grid: grid to synthesise the field on; default `map_grid(ell_max)`.

    Returns:
        the field, shape (..., n_lat, n_lon) on `grid`; real if the maps are real.

    Raises:
        ValueError: if the number or shapes of the maps do not match the filter bank.
    """
    wavelet_maps = tuple(wavelet_maps)
    if ell_max is None:
        if not wavelet_maps:
            raise ValueError("wavelet_maps is empty: pass the maps of every scale.")
        ell_max = jnp.shape(wavelet_maps[-1])[-2] // 2 - 1
    bank = wavelet_filters(ell_max, J0, lam)
    grid = map_grid(ell_max) if grid is None else grid
    if len(wavelet_maps) != len(bank.scales):
        raise ValueError(
            f"Expected {len(bank.scales)} wavelet maps (scales {bank.scales}) for "
            f"ell_max={ell_max}, J0={J0}, lam={lam}. Received {len(wavelet_maps)}."
        )
    maps = (scaling_map, *wavelet_maps)
    kernels = (bank.scaling, *bank.wavelets)
    bands = (bank.scaling_bandlimit, *bank.scale_bandlimits)
    is_real = True
    total = None
    for index, (values, kernel, band) in enumerate(
        zip(maps, kernels, bands, strict=True)
    ):
        values = jnp.asarray(values)
        expected = map_grid(band)
        if values.shape[-2:] != expected.shape:
            raise ValueError(
                f"Map {index} (bandlimit {band}) must be sampled on {expected.shape}. "
                f"Received shape {tuple(values.shape)}."
            )
        is_real = is_real and not jnp.issubdtype(values.dtype, jnp.complexfloating)
        coeffs = truncate(_coefficients(values, expected, max(band, 1)), band)
        term = pad(apply_kernel(coeffs, kernel, band), ell_max)
        total = term if total is None else total + term
    return isht(total, grid, 0, is_real=is_real)
