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


def _latitude_forward(plan: SHTPlan, columns_by_group, tables):
    """Contract rows with latitude tables: a_ell,m = sum_j table[ell, m, j] F_j,m.

    Args:
        plan: the plan.
        tables: per (block, group), (orders, degrees, rows): the analysis tables, or
            the synthesis ones for the transpose of the synthesis.
        columns_by_group: per table group, complex (sign, B, rows, L + 1) longitude
            spectra (sign: +m, and -m where present).

    Returns:
        real (L + 1, L + 1, 2 * sign * B) [ell, m, (re/im, sign, B)].
    """
    layout = plan.layout
    forward_index = plan.arrays[3]
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


def _latitude_inverse(plan: SHTPlan, half, n_signs: int, tables):
    """Contract degrees with latitude tables: F_j,m = sum_ell table[ell, m, j] a_ell,m.

    Args:
        plan: the plan.
        tables: per (block, group), (orders, degrees, rows): the synthesis tables, or
            the analysis ones for the transpose of the analysis.
        half: real (L + 1, L + 1, C) [ell, m, (re/im, sign, B)] coefficients.
        n_signs: 1 (m >= 0 only) or 2 (+m and -m).

    Returns:
        per table group, complex (sign, B, rows, L + 1) longitude spectra.
    """
    layout = plan.layout
    inverse_index = plan.arrays[4]
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
            table = tables[position]
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


def _analysis_tables(plan: SHTPlan):
    """The tables of the latitude analysis: exact ones where the plan has them."""
    synthesis, analysis = plan.arrays[0], plan.arrays[1]
    return analysis if analysis else synthesis


def _fold_rows(plan: SHTPlan, columns, equator_twice: bool = True):
    """Longitude spectra per row -> the inputs of the latitude matmuls.

    Args:
        plan: the plan.
        columns: complex (sign, B, n_lat, L + 1): +m (and -m) spectra per grid row.
        equator_twice: on odd grids with the parity fold, the equator row enters
            both the northern and the mirrored southern half (the analysis halves its
            weight to compensate); False leaves it out of the southern half (the
            transpose of `_unfold_rows`).

    Returns:
        per table group, complex (sign, B, rows, L + 1).
    """
    layout = plan.layout
    if layout.uses_parity:
        n_north = layout.n_rows
        north = columns[:, :, :n_north]
        south = columns[:, :, ::-1][:, :, :n_north]
        if not equator_twice and plan.grid.n_lat % 2:
            south = south * (jnp.arange(n_north) < n_north - 1)[:, None]
        # An odd grid's equator row is its own mirror: its weight was halved, so the sum
        # counts it once and the difference vanishes there.
        return [north + south, north - south]
    # -m columns use the table of +m on mirrored rows.
    return [jnp.stack([columns[0], columns[1, :, ::-1]], axis=0)]


def _unfold_rows(plan: SHTPlan, per_group, equator_twice: bool = False):
    """Outputs of the latitude matmuls -> longitude spectra per row.

    Args:
        plan: the plan.
        per_group: per table group, complex (sign, B, rows, L + 1).
        equator_twice: add the southern half's copy of an odd grid's equator row to
            it (the transpose of `_fold_rows`); False drops that copy (synthesis).

    Returns:
        complex (sign, B, n_lat, L + 1).
    """
    layout = plan.layout
    if not layout.uses_parity:
        columns = per_group[0]
        if columns.shape[0] == 1:
            return columns
        return jnp.stack([columns[0], columns[1, :, ::-1]], axis=0)  # rows back
    even, odd = per_group  # [sign, B, north rows, m]
    north, south = even + odd, even - odd
    n_south = plan.grid.n_lat - layout.n_rows
    if equator_twice and plan.grid.n_lat % 2:
        north = jnp.concatenate(
            [north[:, :, :-1], north[:, :, -1:] + south[:, :, -1:]], axis=2
        )
    return jnp.concatenate([north, south[:, :, :n_south][:, :, ::-1]], axis=2)


def _negative_order_sign(plan: SHTPlan):
    """+-1 relating a_ell,-m to the tables' -m output, broadcastable to [ell, m, B].

    Spin 0 (mirror-symmetric tables): (-1)^m. Other spins (+m tables on mirrored
    rows): (-1)^(ell + s).
    """
    size, dtype = plan.ell_max + 1, jnp.dtype(plan.dtype)
    if plan.layout.uses_parity:
        return _alternating(size, dtype)[None, :, None]
    return (_alternating(size, dtype) * (-1.0) ** plan.spin)[:, None, None]


def _coefficients_from_half(plan: SHTPlan, half, conjugate_negative: bool):
    """[ell, m >= 0, sign, B] complex halves -> padded (B, L + 1, 2L + 1).

    `conjugate_negative`: there is one sign (a real spin-0 field); m < 0 follows from
    a_ell,-m = (-1)^m conj(a_ell,m). The -m half's m = 0 entry is dropped (m = 0 comes
    from the +m half).
    """
    positive = half[:, :, 0]
    if conjugate_negative:
        sign_m = _alternating(plan.ell_max + 1, jnp.dtype(plan.dtype))
        negative = sign_m[None, :, None] * jnp.conj(positive)
    else:
        negative = _negative_order_sign(plan) * half[:, :, 1]
    # Padded layout: m = -L..-1 from the negative half (reversed), then m = 0..L.
    full = jnp.concatenate([negative[:, :0:-1], positive], axis=1)  # [ell, 2L+1, B]
    return jnp.transpose(full, (2, 0, 1))


def _half_from_coefficients(plan: SHTPlan, a, with_negative: bool):
    """Padded (B, L + 1, 2L + 1) -> real (L + 1, L + 1, 2 sign B) matmul input.

    Returns the [ell, m >= 0, (re/im, sign, B)] layout of `_split_complex`, -m orders
    carried with the sign convention of the plan's tables.
    """
    ell_max = plan.ell_max
    size = ell_max + 1
    coeffs = jnp.transpose(a, (1, 2, 0))  # [ell, 2L+1, B]
    halves = [coeffs[:, ell_max:]]
    if with_negative:
        # m = 0, -1, ..., -L
        halves.append(coeffs[:, ell_max::-1] * _negative_order_sign(plan))
    half = jnp.stack(halves, axis=2).reshape(size, size, -1)  # [ell, m, (sign, B)]
    return _split_complex(half)


def _analyse_columns(plan: SHTPlan, columns, tables, equator_twice: bool = True):
    """Latitude stage of the analysis: (sign, B, n_lat, L + 1) -> (B, L + 1, 2L + 1)."""
    size = plan.ell_max + 1
    n_signs, n_batch = columns.shape[0], columns.shape[1]
    groups = _fold_rows(plan, columns, equator_twice)
    half = _merge_complex(_latitude_forward(plan, groups, tables))  # [ell, m, (s, B)]
    half = half.reshape(size, size, n_signs, n_batch)
    return _coefficients_from_half(plan, half, conjugate_negative=n_signs == 1)


def _synthesise_columns(plan: SHTPlan, a, tables, with_negative: bool, equator_twice):
    """Latitude stage of the synthesis: (B, L + 1, 2L + 1) -> (sign, B, n_lat, m)."""
    half = _half_from_coefficients(plan, a, with_negative)
    per_group = _latitude_inverse(plan, half, 1 + with_negative, tables)
    return _unfold_rows(plan, per_group, equator_twice)


def _spectrum_from_columns(plan: SHTPlan, columns):
    """+m and -m columns (2, B, n_lat, L + 1) -> the full (B, n_lat, n_lon) spectrum.

    The -m columns' m = 0 entry is dropped (m = 0 comes from the +m columns).
    """
    grid, ell_max = plan.grid, plan.ell_max
    gap = grid.n_lon - 2 * ell_max - 1
    positive, negative = columns[0], columns[1]
    return jnp.concatenate(
        [
            positive,
            jnp.zeros((*positive.shape[:2], gap), positive.dtype),
            negative[..., :0:-1],  # m = -L..-1 at indices n_lon - L..n_lon - 1
        ],
        axis=-1,
    )


def _columns_from_spectrum(plan: SHTPlan, spectrum):
    """Full (B, n_lat, n_lon) spectrum -> +m and -m columns (2, B, n_lat, L + 1)."""
    size = plan.ell_max + 1
    negative = spectrum[..., (-np.arange(size)) % plan.grid.n_lon]
    return jnp.stack([spectrum[..., :size], negative], axis=0)


def _complex_dtype(plan: SHTPlan):
    return jnp.result_type(jnp.dtype(plan.dtype), jnp.complex64)


def _forward(plan: SHTPlan, x, fast_vjp: bool = False):
    grid, ell_max, spin = plan.grid, plan.ell_max, plan.spin
    batch_shape = x.shape[:-2]
    x = x.reshape(-1, grid.n_lat, grid.n_lon)
    is_real = spin == 0 and not jnp.issubdtype(x.dtype, jnp.complexfloating)
    if is_real:
        full = _forward_real(plan, x)
    else:
        x = x.astype(_complex_dtype(plan))
        full = (_forward_complex_vjp if fast_vjp else _forward_complex)(plan, x)
    return full.reshape(*batch_shape, ell_max + 1, 2 * ell_max + 1)


def _forward_real(plan: SHTPlan, x):
    """Real spin-0 fields (B, n_lat, n_lon): rfft, m >= 0 only."""
    size = plan.ell_max + 1
    real_dtype = jnp.dtype(plan.dtype)
    row_weights = plan.arrays[2][:, None]
    spectrum = jnp.fft.rfft(x.astype(real_dtype), axis=-1)[..., :size]
    columns = (spectrum * row_weights)[None]  # [1, B, rows, m]
    full = _analyse_columns(plan, columns, _analysis_tables(plan))
    return full.astype(_complex_dtype(plan))


def _forward_complex(plan: SHTPlan, x):
    """Complex fields (B, n_lat, n_lon) -> (B, L + 1, 2L + 1)."""
    columns = _columns_from_spectrum(plan, jnp.fft.fft(x, axis=-1))
    columns = columns * plan.arrays[2][:, None]
    return _analyse_columns(plan, columns, _analysis_tables(plan))


def _forward_complex_transpose(plan: SHTPlan, cotangent):
    """Transpose of `_forward_complex`: the adjoint analysis, an inverse-like pass.

    The forward map is FFT, row weights, latitude tables; its transpose applies the
    transposed tables (the synthesis code with the analysis tables), the row weights
    and the transpose of the FFT, which is the FFT again.
    """
    columns = _synthesise_columns(
        plan, cotangent, _analysis_tables(plan), True, equator_twice=True
    )
    columns = columns * plan.arrays[2][:, None]
    return jnp.fft.fft(_spectrum_from_columns(plan, columns), axis=-1)


def _zero_cotangent(tree):
    def zero(leaf):
        if jnp.issubdtype(leaf.dtype, jnp.integer):
            return np.zeros(leaf.shape, jax.dtypes.float0)
        return jnp.zeros_like(leaf)

    return jax.tree_util.tree_map(zero, tree)


def _with_transpose(linear, transpose):
    """`linear(plan, x)` whose reverse-mode derivative is `transpose(plan, ct)`."""
    function = jax.custom_vjp(linear)
    function.defvjp(
        lambda plan, x: (linear(plan, x), plan),
        lambda plan, cotangent: (_zero_cotangent(plan), transpose(plan, cotangent)),
    )
    return function


_forward_complex_vjp = _with_transpose(_forward_complex, _forward_complex_transpose)


def _validity(ell_max, spin, dtype):
    """1 where (ell, m) is a coefficient of a spin-`spin` field, else 0, in-graph."""
    ell = jnp.arange(ell_max + 1)[:, None]
    m = jnp.arange(-ell_max, ell_max + 1)[None, :]
    return ((jnp.abs(m) <= ell) & (ell >= abs(spin))).astype(dtype)


def _inverse(plan: SHTPlan, a, is_real: bool, fast_vjp: bool = False):
    grid, ell_max = plan.grid, plan.ell_max
    size = ell_max + 1
    batch_shape = a.shape[:-2]
    a = a.reshape(-1, size, 2 * ell_max + 1).astype(_complex_dtype(plan))
    if is_real:
        field = _inverse_real(plan, a)
    else:
        field = (_inverse_complex_vjp if fast_vjp else _inverse_complex)(plan, a)
    return field.reshape(*batch_shape, grid.n_lat, grid.n_lon)


def _inverse_real(plan: SHTPlan, a):
    """Real spin-0 synthesis from the m >= 0 half: inverse rfft."""
    grid, size = plan.grid, plan.ell_max + 1
    a = a * _validity(plan.ell_max, plan.spin, jnp.dtype(plan.dtype))
    columns = _synthesise_columns(plan, a, plan.arrays[0], False, equator_twice=False)
    n_freq = grid.n_lon // 2 + 1
    spectrum = jnp.pad(columns[0], ((0, 0), (0, 0), (0, n_freq - size)))
    field = jnp.fft.irfft(spectrum, n=grid.n_lon, axis=-1) * grid.n_lon
    return field.astype(jnp.dtype(plan.dtype))


def _inverse_complex(plan: SHTPlan, a):
    """(B, L + 1, 2L + 1) -> complex fields (B, n_lat, n_lon)."""
    a = a * _validity(plan.ell_max, plan.spin, jnp.dtype(plan.dtype))
    columns = _synthesise_columns(plan, a, plan.arrays[0], True, equator_twice=False)
    spectrum = _spectrum_from_columns(plan, columns)
    return jnp.fft.ifft(spectrum, axis=-1) * plan.grid.n_lon


def _inverse_complex_transpose(plan: SHTPlan, cotangent):
    """Transpose of `_inverse_complex`: the adjoint synthesis, a forward-like pass.

    The inverse FFT (times n_lon) is its own transpose; the latitude stage runs the
    analysis code on the synthesis tables without row weights, leaving an odd grid's
    equator out of the mirrored half, as the synthesis writes it once.
    """
    spectrum = jnp.fft.ifft(cotangent, axis=-1) * plan.grid.n_lon
    columns = _columns_from_spectrum(plan, spectrum)
    a = _analyse_columns(plan, columns, plan.arrays[0], equator_twice=False)
    return a * _validity(plan.ell_max, plan.spin, jnp.dtype(plan.dtype))


_inverse_complex_vjp = _with_transpose(_inverse_complex, _inverse_complex_transpose)


_forward_jit = jax.jit(_forward, static_argnums=2)
_inverse_jit = jax.jit(_inverse, static_argnums=(2, 3))
