"""Wigner small-d functions and spin-weighted spherical harmonics, in float64.

Conventions (``sphere-maths.md`` section 3): Wigner-d in the Sakurai convention, so
d^1_{1,0}(beta) = -sin(beta) / sqrt(2); spin-weighted harmonics in the Goldberg /
spinsfast convention,

    sY_ell,m(theta, phi) = (-1)^s sqrt((2 ell + 1) / (4 pi)) d^ell_{m,-s}(theta) e^{i m
    phi},

which for s = 0 equals ``scipy.special.sph_harm_y(ell, m, theta, phi)``, phase included.

The d-functions come from the three-term recursion in ell at fixed (m, m'), started at
ell_0 = max(|m|, |m'|) from its closed form evaluated in log space, with a per-point
scale
exponent so that values far below the float64 range (near the poles, at large ell) still
grow correctly through the evanescent region. Poles use the exact values
d(0) = delta_{m m'} and d(pi) = (-1)^(ell + m) delta_{m, -m'}. The recursion is stable
in float64 to at least ell = 1023 (tests check the Gram identity there).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

__all__ = ["spin_harmonics", "wigner_d", "wigner_delta"]

_RESCALE = 1e100
_LOG_RESCALE = np.log(_RESCALE)


def wigner_d(ell_max: int, m, m_prime, beta) -> np.ndarray:
    """Wigner small-d functions d^ell_{m, m'}(beta) for all ell <= ell_max.

    Args:
        ell_max: inclusive maximum degree.
        m: int array, shape P (any shape broadcasting with `m_prime`), first order.
        m_prime: int array broadcasting with `m`, second order.
        beta: float64 array, shape (n_beta,), angles in radians in [0, pi].

    Returns:
        float64, shape (ell_max + 1, *broadcast(m, m').shape, n_beta); zero where
        ell < max(|m|, |m'|).
    """
    m, m_prime = np.broadcast_arrays(
        np.asarray(m, np.int64), np.asarray(m_prime, np.int64)
    )
    pair_shape = m.shape
    m = m.reshape(-1, 1).astype(np.float64)
    mp = m_prime.reshape(-1, 1).astype(np.float64)
    beta = np.atleast_1d(np.asarray(beta, np.float64))
    # Grid angles such as pi * j / (n - 1) land up to a few ulps outside [0, pi]
    # (pi + 4.4e-16 for n = 14, 27, 48, ...): snap them onto the poles, which are
    # handled exactly below, instead of treating them as outside the range.
    slack = 1e-12
    if np.any((beta < -slack) | (beta > np.pi + slack)):
        raise ValueError(
            f"beta must lie in [0, pi]; received {beta.min()}..{beta.max()}"
        )
    beta = np.clip(beta, 0.0, np.pi)
    out = np.zeros((ell_max + 1, m.shape[0], beta.size))
    interior = (beta > 0) & (beta < np.pi)
    if interior.any():
        out[:, :, interior] = _recursion(ell_max, m, mp, beta[interior])
    ell = np.arange(ell_max + 1)[:, None]
    valid = ell >= np.maximum(np.abs(m), np.abs(mp)).T  # [ell, pair]
    for j in np.flatnonzero(beta == 0):
        out[:, :, j] = np.where(valid & (m == mp).T, 1.0, 0.0)
    for j in np.flatnonzero(beta == np.pi):
        sign = np.where((ell + m.T) % 2 == 0, 1.0, -1.0)
        out[:, :, j] = np.where(valid & (m == -mp).T, sign, 0.0)
    return out.reshape(ell_max + 1, *pair_shape, beta.size)


def _log_start(ell0, m, mp, log_c, log_t):
    """log|d^{ell0}_{m,m'}| and its sign at ell0 = max(|m|, |m'|) (closed forms)."""
    # Four closed forms, chosen by which of m, -m, m', -m' equals ell0.
    case_m = m == ell0
    case_minus_m = (~case_m) & (m == -ell0)
    case_mp = (~case_m) & (~case_minus_m) & (mp == ell0)
    # remaining: mp == -ell0
    a = np.where(case_m | case_minus_m, mp, m)  # the other order
    # Powers of c = cos(theta/2) and t = sin(theta/2).
    power_c = np.where(case_m | case_mp, ell0 + a, ell0 - a)
    power_t = np.where(case_m | case_mp, ell0 - a, ell0 + a)
    log_binom = gammaln(2 * ell0 + 1) - gammaln(power_c + 1) - gammaln(power_t + 1)
    log_mag = 0.5 * log_binom + power_c * log_c + power_t * log_t
    # Signs: m = ell0: (-1)^(ell0 - m'); m' = -ell0: (-1)^(ell0 + m); others +.
    odd = np.where(case_m, (ell0 - mp) % 2, 0.0)
    is_last = ~(case_m | case_minus_m | case_mp)
    odd = np.where(is_last, (ell0 + m) % 2, odd)
    return log_mag, np.where(odd == 1, -1.0, 1.0)


def _recursion(ell_max, m, mp, beta):
    """The scaled three-term recursion for interior angles; shape (L+1, P, n)."""
    out = np.zeros((ell_max + 1, m.shape[0], beta.size))
    cos_b = np.cos(beta)[None, :]
    log_c = np.log(np.cos(beta / 2))[None, :]
    log_t = np.log(np.sin(beta / 2))[None, :]
    ell0 = np.maximum(np.abs(m), np.abs(mp))  # [P, 1]
    log_mag, sign = _log_start(ell0, m, mp, log_c, log_t)
    start_min = int(ell0.min())
    shape = (m.shape[0], beta.size)
    prev = np.zeros(shape)  # d^{ell-1} mantissa
    cur = np.zeros(shape)  # d^{ell} mantissa
    scale = np.zeros(shape)  # log scale shared by prev and cur
    for ell in range(start_min, ell_max + 1):
        starting = (ell0 == ell)[:, 0]
        if starting.any():
            cur[starting] = sign[starting]
            prev[starting] = 0.0
            scale[starting] = log_mag[starting]
        active = (ell0 <= ell)[:, 0]
        out[ell] = np.where(active[:, None], cur * np.exp(scale), 0.0)
        if ell == ell_max:
            break
        if ell == 0:
            # Only (0, 0) starts at ell = 0; d^1_00 = cos(beta) d^0_00.
            nxt = cos_b * cur
        else:
            denom = ell * np.sqrt(
                np.maximum(((ell + 1) ** 2 - m**2) * ((ell + 1) ** 2 - mp**2), 1.0)
            )
            a = (2 * ell + 1) * (ell * (ell + 1) * cos_b - m * mp) / denom
            b = (ell + 1) * np.sqrt(np.maximum((ell**2 - m**2) * (ell**2 - mp**2), 0.0))
            nxt = a * cur - (b / denom) * prev
        nxt = np.where(active[:, None], nxt, 0.0)
        prev, cur = cur, nxt
        big = np.abs(cur) > _RESCALE
        if big.any():
            cur = np.where(big, cur / _RESCALE, cur)
            prev = np.where(big, prev / _RESCALE, prev)
            scale = np.where(big, scale + _LOG_RESCALE, scale)
    return out


def spin_harmonics(ell_max: int, m, spin: int, theta) -> np.ndarray:
    """Spin-weighted harmonics at phi = 0, sY_ell,m(theta, 0), which are real.

    Args:
        ell_max: inclusive maximum degree.
        m: int array of orders, shape (P,).
        spin: spin weight s.
        theta: float64 colatitudes in radians, shape (n,).

    Returns:
        float64, shape (ell_max + 1, P, n); zero where ell < max(|m|, |s|).
    """
    d = wigner_d(ell_max, np.asarray(m), -int(spin), theta)
    norm = np.sqrt((2 * np.arange(ell_max + 1) + 1) / (4 * np.pi))
    return (-1.0) ** spin * norm[:, None, None] * d


def wigner_delta(ell_max: int) -> np.ndarray:
    """Wigner Delta matrices Delta^ell_{m', m} = d^ell_{m', m}(pi / 2).

    Returns:
        float64, shape (ell_max + 1, 2 ell_max + 1, 2 ell_max + 1) indexed
        [ell, ell_max + m', ell_max + m]; zero outside |m|, |m'| <= ell.
    """
    orders = np.arange(-ell_max, ell_max + 1)
    d = wigner_d(ell_max, orders[:, None], orders[None, :], np.array([np.pi / 2]))
    return d[..., 0]
