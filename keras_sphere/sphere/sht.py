"""Forward and inverse spin-weighted spherical harmonic transforms.

Conventions (``wigner.py``, ``grid.py``): a spin-s field on an equiangular grid with
both poles is
f(theta, phi) = sum_{ell >= |s|} sum_{|m| <= ell} a_ell,m sY_ell,m(theta, phi).
Coefficients use the padded layout (..., L + 1, 2L + 1): a_ell,m at index [ell, L + m],
structural zeros where |m| > ell or ell < |s|; `truncate` and `pad` change L.

`sht` and `isht` check their input, fetch the cached `SHTPlan` (``sht_plan.py``) of the
grid, bandlimit, spin and precision, and run it: a longitude FFT and one real matmul per
block of orders (``sht_kernels.py``), with tables built once (``sht_tables.py``). Real
spin-0 fields take a fast path (rfft, m >= 0 only; a_ell,-m = (-1)^m conj(a_ell,m)).
All functions are jit-compatible and differentiable with ``jax.grad``. When a transform
is traced inside a caller's ``jax.jit``, its tables are fetched at run time by a host
callback instead of being compiled in as constants. To pass them as ordinary inputs
(fastest), take the plan as an argument of the jitted function:
``plan = sht_plan(grid, lmax, spin)`` then ``plan.forward(field)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.sht_plan import SHTPlan
from keras_sphere.sphere.sht_plan import runtime_inputs
from keras_sphere.sphere.sht_plan import sht_plan

__all__ = ["isht", "pad", "sht", "truncate"]


def _real_dtype_of(array) -> str:
    dtype = jnp.result_type(array)
    if dtype in (jnp.float64, jnp.complex128) and jax.config.jax_enable_x64:
        return "float64"
    return "float32"


def _check_finite(array, what: str) -> None:
    """Raise ValueError on NaN or infinity in concrete (not traced) input."""
    if isinstance(array, jax.core.Tracer):
        return
    values = np.asarray(array)
    if not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise ValueError(
            f"The {what} contains {bad} non-finite value(s) (NaN or inf). Clean or "
            "mask the input first: a single NaN spreads to every coefficient."
        )


def _resolve_plan(plan: SHTPlan, traced: bool) -> SHTPlan:
    """The plan whose tables are runtime inputs: fetched by callback when traced."""
    return runtime_inputs(plan) if traced else plan


def sht(x, grid: Grid, spin: int = 0, lmax: int | None = None):
    """Forward spin-weighted spherical harmonic transform.

    Args:
        x: float or complex array, shape (..., n_lat, n_lon): a spin-`spin` field
        sampled
            on `grid`, row 0 at the north pole (theta = 0), column 0 at phi = 0. Real
            spin-0 input takes the fast real path. float64 / complex128 input computes
            in float64 when ``jax_enable_x64`` is on; anything else in float32.
        grid: the `Grid` the field is sampled on.
        spin: spin weight s, |s| <= lmax.
        lmax: inclusive maximum degree L of the result; default `grid.max_bandlimit`.
            A smaller value truncates (exactly: the result equals slicing the full one).

    Returns:
        complex64 (complex128 in float64 mode), shape (..., L + 1, 2L + 1);
        a_ell,m at [..., ell, L + m], zero where |m| > ell or ell < |s|.

    Raises:
        ValueError: if the trailing axes are not (n_lat, n_lon), lmax exceeds
            `grid.max_bandlimit`, |spin| > lmax, or concrete input has NaN or inf.
    """
    x = jnp.asarray(x)
    grid.check_field_shape(x.shape)
    _check_finite(x, "field passed to sht")
    plan = sht_plan(grid, lmax, spin, _real_dtype_of(x))
    traced = isinstance(x, jax.core.Tracer)
    return _resolve_plan(plan, traced).forward(x)


def isht(a, grid: Grid, spin: int = 0, *, is_real: bool = False):
    """Inverse spin-weighted spherical harmonic transform (synthesis on `grid`).

    Args:
        a: complex array, shape (..., L + 1, 2L + 1), padded layout as returned by
        `sht`.
            Entries at |m| > ell or ell < |spin| are ignored.
        grid: the `Grid` to synthesise on; L must be <= `grid.max_bandlimit`.
        spin: spin weight s of the field, |s| <= L.
        is_real: the coefficients are those of a real spin-0 field
            (a_ell,-m = (-1)^m conj(a_ell,m)): synthesise from the m >= 0 half with an
            inverse rfft and return a real array (faster).

    Returns:
        complex64 (float32 if `is_real`; 64-bit types in float64 mode), shape
        (..., n_lat, n_lon).

    Raises:
        ValueError: if `a` is not in the padded layout, L exceeds the grid's limit,
            |spin| > L, `is_real` is requested for a spin other than 0, or concrete
            input has NaN or inf.
    """
    a = jnp.asarray(a)
    ell_max = _check_coefficient_shape(a.shape)
    if is_real and spin != 0:
        raise ValueError(
            f"is_real=True synthesises real spin-0 fields only. Received: spin={spin}. "
            "Spin-weighted fields are complex; call isht without is_real."
        )
    _check_finite(a, "coefficient array passed to isht")
    plan = sht_plan(grid, ell_max, spin, _real_dtype_of(a))
    traced = isinstance(a, jax.core.Tracer)
    return _resolve_plan(plan, traced).inverse(a, is_real=is_real)


def _check_coefficient_shape(shape) -> int:
    if len(shape) < 2 or shape[-1] != 2 * shape[-2] - 1:
        raise ValueError(
            "Coefficients must end with the padded axes (L + 1, 2L + 1). "
            f"Received shape {tuple(shape)}."
        )
    return shape[-2] - 1


def truncate(a, lmax: int):
    """Keep degrees ell <= lmax of padded coefficients (spectral pooling).

    Args:
        a: array, shape (..., L + 1, 2L + 1).
        lmax: new inclusive maximum degree, 0 <= lmax <= L.

    Returns:
        shape (..., lmax + 1, 2 lmax + 1), the same coefficients for ell <= lmax.
    """
    ell_max = _check_coefficient_shape(a.shape)
    if not 0 <= lmax <= ell_max:
        raise ValueError(
            f"truncate needs 0 <= lmax <= L = {ell_max}. Received: lmax={lmax}. "
            "Use pad() to raise the bandlimit."
        )
    return a[..., : lmax + 1, ell_max - lmax : ell_max + lmax + 1]


def pad(a, lmax: int):
    """Zero-pad padded coefficients to a larger bandlimit (spectral upsampling).

    Args:
        a: array, shape (..., L + 1, 2L + 1).
        lmax: new inclusive maximum degree, lmax >= L.

    Returns:
        shape (..., lmax + 1, 2 lmax + 1); zero for ell > L.
    """
    ell_max = _check_coefficient_shape(a.shape)
    if lmax < ell_max:
        raise ValueError(
            f"pad needs lmax >= L = {ell_max}. Received: lmax={lmax}. "
            "Use truncate() to lower the bandlimit."
        )
    extra = lmax - ell_max
    widths = [(0, 0)] * (a.ndim - 2) + [(0, extra), (extra, extra)]
    return jnp.pad(a, widths)
