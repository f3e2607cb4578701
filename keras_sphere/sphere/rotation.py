"""Rotations of spherical fields and their coefficients.

Convention (``sphere-maths.md`` section 3.2): ZYZ Euler angles, active rotations
R = R_z(alpha) R_y(beta) R_z(gamma) (scipy ``Rotation.from_euler("ZYZ", ...)``, upper
case = intrinsic), acting on fields as (R f)(x) = f(R^-1 x). Coefficients transform as

    a'_ell,m = sum_m' e^{-i m alpha} d^ell_{m m'}(beta) e^{-i m' gamma} a_ell,m',

for every spin. The Wigner d-matrix is applied through the Delta factorisation
d^ell_{m m'}(beta) = i^(m - m') sum_k Delta^ell_{k m} Delta^ell_{k m'} e^{-i k beta}, so
angles may be traced values (rotation augmentation inside jitted code) and the cost is
O(L^3) per field.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.sht import _check_coefficient_shape
from keras_sphere.sphere.sht import isht
from keras_sphere.sphere.sht import sht
from keras_sphere.sphere.sht_plan import runtime_inputs
from keras_sphere.sphere.wigner import wigner_delta

__all__ = ["rotate_coefficients", "rotate_field"]


@functools.lru_cache(maxsize=8)
def _delta_tables(ell_max: int, dtype: str):
    # Built eagerly even when first requested inside a trace, so the cache never holds
    # a tracer. Emptied by `clear_cache` (caches.py).
    with jax.ensure_compile_time_eval():
        return jnp.asarray(wigner_delta(ell_max).astype(dtype))


def _euler_angles(rotation) -> tuple:
    """(alpha, beta, gamma) from a 3-sequence or a scipy Rotation."""
    if hasattr(rotation, "as_euler"):
        return tuple(rotation.as_euler("ZYZ"))
    if len(rotation) != 3:
        raise ValueError(
            "rotation must be (alpha, beta, gamma) ZYZ Euler angles in radians or a "
            f"scipy.spatial.transform.Rotation. Received: {rotation!r}"
        )
    return tuple(rotation)


def rotate_coefficients(a, alpha, beta, gamma):
    """Rotate padded spherical harmonic coefficients by ZYZ Euler angles.

    Args:
        a: complex array, shape (..., L + 1, 2L + 1), padded layout of any spin.
        alpha: first rotation angle about z, radians (scalar, may be traced).
        beta: rotation angle about y, radians.
        gamma: second rotation angle about z, radians.

    Returns:
        complex array of the same shape: coefficients of (R f)(x) = f(R^-1 x).
    """
    a = jnp.asarray(a)
    ell_max = _check_coefficient_shape(a.shape)
    real_dtype = "float64" if a.dtype == jnp.complex128 else "float32"
    complex_dtype = jnp.complex128 if real_dtype == "float64" else jnp.complex64
    delta = _delta_tables(ell_max, real_dtype)  # [ell, k, m]
    traced = any(isinstance(v, jax.core.Tracer) for v in (a, alpha, beta, gamma))
    if traced:
        delta = runtime_inputs(delta)
    a = a.astype(complex_dtype)
    orders = jnp.arange(-ell_max, ell_max + 1)
    i_power = jnp.asarray([1, 1j, -1, -1j], complex_dtype)[orders % 4]  # i^m

    def phase(angle):
        return jnp.exp(-1j * orders * jnp.asarray(angle, real_dtype)).astype(
            complex_dtype
        )

    b = a * (phase(gamma) * jnp.conj(i_power))  # e^{-i m' gamma} i^{-m'}
    c = jnp.einsum("lkn,...ln->...lk", delta.astype(complex_dtype), b)
    c = c * phase(beta)  # e^{-i k beta}
    out = jnp.einsum("lkm,...lk->...lm", delta.astype(complex_dtype), c)
    return out * (i_power * phase(alpha))


def rotate_field(x, grid: Grid, rotation, spin: int = 0):
    """Rotate a band-limited field sampled on `grid`: returns (R f)(x) = f(R^-1 x).

    The field is analysed at `grid.max_bandlimit`, its coefficients rotated and
    synthesised back on the same grid, so the result is exact for fields band-limited at
    that degree (for others it is the rotation of their band-limited projection).

    Args:
        x: array, shape (..., n_lat, n_lon); real spin-0 input gives real output.
        grid: the `Grid` of `x`.
        rotation: (alpha, beta, gamma) ZYZ Euler angles in radians, or a
            ``scipy.spatial.transform.Rotation``.
        spin: spin weight of the field.

    Returns:
        array of the same shape as `x`.
    """
    alpha, beta, gamma = _euler_angles(rotation)
    x = jnp.asarray(x)
    is_real = spin == 0 and not jnp.issubdtype(x.dtype, jnp.complexfloating)
    coeffs = rotate_coefficients(sht(x, grid, spin), alpha, beta, gamma)
    return isht(coeffs, grid, spin, is_real=is_real)
