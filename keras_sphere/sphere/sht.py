"""Forward and inverse spin-weighted spherical harmonic transforms.

Conventions (``wigner.py``, ``grid.py``): a spin-s field on an equiangular grid with
both
poles is f(theta, phi) = sum_{ell >= |s|} sum_{|m| <= ell} a_ell,m sY_ell,m(theta, phi).
Coefficients use the padded layout (..., L + 1, 2L + 1): a_ell,m at index [ell, L + m],
structural zeros where |m| > ell or ell < |s|.

Each transform has two stages (``sphere-maths.md`` section 4):

* forward: F_j,m = sum_k f_j,k e^{-i m phi_k} (an FFT along longitude), then
  a_ell,m = sum_j P[ell, m, j] F_j,m, one real matmul per block of orders with batch and
  channels in the matmul's free dimension (``sht_plan.py`` describes the table layout);
* inverse: F_j,m = sum_ell Y[ell, m, j] a_ell,m, then an inverse FFT along longitude.

Real spin-0 fields take a fast path (rfft, m >= 0 only; a_ell,-m = (-1)^m
conj(a_ell,m)).
All functions are jit-compatible and differentiable with ``jax.grad``. Tables come from
a cached `SHTPlan`; when a transform is traced inside a caller's ``jax.jit``, its tables
are fetched at run time by a host callback instead of being compiled in as constants. To
pass
them as ordinary inputs (fastest), take the plan as an argument of the jitted function:
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

_PRECISION = jax.lax.Precision.HIGHEST


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
    return _forward_jit(_resolve_plan(plan, traced), x)


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
    return _inverse_jit(_resolve_plan(plan, traced), a, is_real)


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


# ------------------------------------------------------------------------------------
# Kernels. `plan` carries the tables as pytree leaves; shapes and layout are static.


def _split_complex(z):
    """Complex (..., C) -> real (..., 2C): all real parts, then all imaginary parts."""
    return jnp.concatenate([z.real, z.imag], axis=-1)


def _merge_complex(r):
    """Real (..., 2C) as made by `_split_complex` -> complex (..., C)."""
    half = r.shape[-1] // 2
    return jax.lax.complex(r[..., :half], r[..., half:])


def _latitude_forward(plan: SHTPlan, columns_by_group):
    """Apply the analysis tables.

    Args:
        plan: the plan.
        columns_by_group: per table group, complex (sign, B, rows, L + 1) longitude
            spectra (sign: +m, and -m where present).

    Returns:
        real (L + 1, L + 1, 2 * sign * B) [ell, m, (re/im, sign, B)].
    """
    layout = plan.layout
    synthesis, analysis, _, forward_index, _ = plan.arrays
    tables = analysis if analysis else synthesis
    outputs = []
    position = 0
    for m0, m1 in layout.blocks:
        for columns in columns_by_group:
            table = tables[position]
            position += 1
            if table.shape[1] == 0:
                continue
            # Slice this block's orders before moving them to the front, so that the
            # transpose, the fold into real parts and the slice are one pass.
            block = jnp.transpose(
                columns[..., m0:m1], (3, 2, 0, 1)
            )  # [m, rows, sign, B]
            data = _split_complex(block.reshape(m1 - m0, block.shape[1], -1))
            # [m, k, rows] x [m, rows, C] -> [m, k, C]
            out = jnp.einsum("mkj,mjc->mkc", table, data, precision=_PRECISION)
            outputs.append(out.reshape(-1, out.shape[-1]))
    n_cols = outputs[0].shape[-1]
    outputs.append(jnp.zeros((1, n_cols), outputs[0].dtype))
    stacked = jnp.concatenate(outputs, axis=0)
    return stacked[forward_index]  # [ell, m, C]


def _latitude_inverse(plan: SHTPlan, half, n_signs: int):
    """Apply the synthesis tables.

    Args:
        plan: the plan.
        half: real (L + 1, L + 1, C) [ell, m, (re/im, sign, B)] coefficients.
        n_signs: 1 (m >= 0 only) or 2 (+m and -m).

    Returns:
        per table group, complex (sign, B, rows, L + 1) longitude spectra.
    """
    layout = plan.layout
    synthesis, _, _, _, inverse_index = plan.arrays
    size = layout.ell_max + 1
    n_cols = half.shape[-1]
    flat = jnp.concatenate(
        [half.reshape(size * size, n_cols), jnp.zeros((1, n_cols), half.dtype)]
    )
    per_group = [[] for _ in layout.groups]
    position = 0
    start = 0
    for m0, m1 in layout.blocks:
        for group in range(len(layout.groups)):
            table = synthesis[position]
            position += 1
            n_k = table.shape[1]
            if n_k == 0:
                out = jnp.zeros((m1 - m0, n_cols, layout.n_rows), half.dtype)
            else:
                count = (m1 - m0) * n_k
                coeffs = flat[inverse_index[start : start + count]]
                coeffs = coeffs.reshape(m1 - m0, n_k, n_cols)
                start += count
                # [m, k, C] x [m, k, rows] -> [m, C, rows]. With the coefficients as
                # the left operand XLA needs no transposed copy of the table
                # (measured 9x faster for C = 2, 1.5x for C = 128 at L = 511 than
                # "mkj,mkc->mjc").
                out = jnp.einsum("mkc,mkj->mcj", coeffs, table, precision=_PRECISION)
            n_half = n_cols // 2  # real parts, then imaginary parts (_split_complex)
            out = jax.lax.complex(out[:, :n_half], out[:, n_half:])  # [m, sign*B, rows]
            out = out.reshape(m1 - m0, n_signs, -1, layout.n_rows)
            per_group[group].append(
                jnp.transpose(out, (1, 2, 3, 0))
            )  # [sign, B, rows, m]
    return [jnp.concatenate(parts, axis=-1) for parts in per_group]


def _alternating(n, dtype):
    """(-1)^i for i in range(n), built in-graph (no constant)."""
    return (1 - 2 * (jnp.arange(n) % 2)).astype(dtype)


def _forward(plan: SHTPlan, x):
    grid, ell_max, spin = plan.grid, plan.ell_max, plan.spin
    layout = plan.layout
    real_dtype = jnp.dtype(plan.dtype)
    complex_dtype = jnp.result_type(real_dtype, jnp.complex64)
    batch_shape = x.shape[:-2]
    x = x.reshape(-1, grid.n_lat, grid.n_lon)
    n_batch = x.shape[0]
    size = ell_max + 1
    is_real = spin == 0 and not jnp.issubdtype(x.dtype, jnp.complexfloating)
    row_weights = plan.arrays[2][:, None]
    if is_real:
        spectrum = jnp.fft.rfft(x.astype(real_dtype), axis=-1)[..., :size]
        columns = [spectrum * row_weights]  # [B, rows, m]
    else:
        spectrum = jnp.fft.fft(x.astype(complex_dtype), axis=-1)
        negative = spectrum[..., (-np.arange(size)) % grid.n_lon]
        columns = [spectrum[..., :size] * row_weights, negative * row_weights]
    # Stack the +m (and -m) columns into the matmul's free dimension: [m, rows, C].
    stacked = jnp.stack(columns, axis=0)  # [sign, B, rows, m]
    if layout.uses_parity:
        n_north = layout.n_rows
        north = stacked[:, :, :n_north]
        south = stacked[:, :, ::-1][:, :, :n_north]
        # An odd grid's equator row is its own mirror: its weight was halved, so the sum
        # counts it once and the difference vanishes there.
        groups = [north + south, north - south]
    else:
        # -m columns use the table of +m on mirrored rows.
        groups = [jnp.stack([stacked[0], stacked[1, :, ::-1]], axis=0)]
    half = _merge_complex(_latitude_forward(plan, groups))  # [ell, m, (sign, B)]
    half = half.reshape(size, size, len(columns), n_batch)
    positive = half[:, :, 0]
    sign_m = _alternating(size, real_dtype)[None, :, None]
    if is_real:
        negative = sign_m * jnp.conj(positive)
    elif layout.uses_parity:
        negative = sign_m * half[:, :, 1]
    else:
        sign_ell = _alternating(size, real_dtype)[:, None, None] * (-1.0) ** spin
        negative = sign_ell * half[:, :, 1]
    # Padded layout: m = -L..-1 from the negative half (reversed), then m = 0..L.
    full = jnp.concatenate([negative[:, :0:-1], positive], axis=1)  # [ell, 2L+1, B]
    full = jnp.transpose(full, (2, 0, 1)).astype(complex_dtype)
    return full.reshape(*batch_shape, size, 2 * ell_max + 1)


def _validity(ell_max, spin, dtype):
    """1 where (ell, m) is a coefficient of a spin-`spin` field, else 0, in-graph."""
    ell = jnp.arange(ell_max + 1)[:, None]
    m = jnp.arange(-ell_max, ell_max + 1)[None, :]
    return ((jnp.abs(m) <= ell) & (ell >= abs(spin))).astype(dtype)


def _inverse(plan: SHTPlan, a, is_real: bool):
    grid, ell_max, spin = plan.grid, plan.ell_max, plan.spin
    layout = plan.layout
    real_dtype = jnp.dtype(plan.dtype)
    complex_dtype = jnp.result_type(real_dtype, jnp.complex64)
    size = ell_max + 1
    batch_shape = a.shape[:-2]
    a = a.reshape(-1, size, 2 * ell_max + 1).astype(complex_dtype)
    a = a * _validity(ell_max, spin, real_dtype)
    coeffs = jnp.transpose(a, (1, 2, 0))  # [ell, 2L+1, B]
    positive = coeffs[:, ell_max:]
    halves = [positive]
    if not is_real:
        negative = coeffs[:, ell_max::-1]  # m = 0, -1, ..., -L
        if layout.uses_parity:
            negative = negative * _alternating(size, real_dtype)[None, :, None]
        else:
            sign_ell = _alternating(size, real_dtype)[:, None, None] * (-1.0) ** spin
            negative = negative * sign_ell
        halves.append(negative)
    half = jnp.stack(halves, axis=2).reshape(size, size, -1)  # [ell, m, (sign, B)]
    n_signs = len(halves)
    per_group = _latitude_inverse(plan, _split_complex(half), n_signs)
    if layout.uses_parity:
        even, odd = per_group  # [sign, B, north rows, m]
        north, south = even + odd, even - odd
        n_south = grid.n_lat - layout.n_rows
        columns = jnp.concatenate([north, south[:, :, :n_south][:, :, ::-1]], axis=2)
    else:
        columns = per_group[0]
    if is_real:
        n_freq = grid.n_lon // 2 + 1
        spectrum = jnp.pad(columns[0], ((0, 0), (0, 0), (0, n_freq - size)))
        field = jnp.fft.irfft(spectrum, n=grid.n_lon, axis=-1) * grid.n_lon
        field = field.astype(real_dtype)
    else:
        positive_cols = columns[0]
        negative_cols = columns[1]
        if not layout.uses_parity:
            negative_cols = negative_cols[:, ::-1]  # mirrored rows back in place
        gap = grid.n_lon - 2 * ell_max - 1
        spectrum = jnp.concatenate(
            [
                positive_cols,
                jnp.zeros((*positive_cols.shape[:2], gap), complex_dtype),
                negative_cols[..., :0:-1],  # m = -L..-1 at indices n_lon - L..n_lon - 1
            ],
            axis=-1,
        )
        field = jnp.fft.ifft(spectrum, axis=-1) * grid.n_lon
    return field.reshape(*batch_shape, grid.n_lat, grid.n_lon)


_forward_jit = jax.jit(_forward)
_inverse_jit = jax.jit(_inverse, static_argnums=2)
