"""The spin-weighted SHT as jitted passes over the tables of a plan.

Each transform has two stages (``sphere-maths.md`` section 4):

* forward: F_j,m = sum_k f_j,k e^{-i m phi_k} (an FFT along longitude), then
  a_ell,m = sum_j P[ell, m, j] F_j,m, one real matmul per block of orders with batch and
  channels in the matmul's free dimension (``sht_tables.py`` describes the tables and
  their layout);
* inverse: F_j,m = sum_ell Y[ell, m, j] a_ell,m, then an inverse FFT along longitude.

Real spin-0 fields take a fast path (rfft, m >= 0 only; a_ell,-m = (-1)^m
conj(a_ell,m)). Complex transforms can also be differentiated in reverse mode through a
hand-written transposed transform (``fast_vjp``). Coefficients use the padded layout of
``sht.py``.

Every function here takes the plan first: an `SHTPlan` (``sht_plan.py``), a JAX pytree
whose leaves are the device tables and whose grid, ell_max, spin, dtype and layout are
static. This module only reads those fields and imports no plan, so that plans can run
it: `_forward_jit` and `_inverse_jit` are the entry points of `SHTPlan.forward` and
`SHTPlan.inverse`, and through them of ``sht`` and ``isht``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_PRECISION = jax.lax.Precision.HIGHEST


def _split_complex(z):
    """Complex (..., C) -> real (..., 2C): all real parts, then all imaginary parts."""
    return jnp.concatenate([z.real, z.imag], axis=-1)


def _merge_complex(r):
    """Real (..., 2C) as made by `_split_complex` -> complex (..., C)."""
    half = r.shape[-1] // 2
    return jax.lax.complex(r[..., :half], r[..., half:])


def _latitude_forward(plan, columns_by_group, tables):
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
    # The blocks partition the orders: one split, whose gradient is one concatenate
    # (a slice per block would pad each block's gradient to the full array and add
    # them up: 0.5 of 2.1 CPU s in the 256 x 256 weather step's real transforms).
    cuts = [m0 for m0, _ in layout.blocks[1:]]
    by_block = [jnp.split(columns, cuts, axis=-1) for columns in columns_by_group]
    for index, (m0, m1) in enumerate(layout.blocks):
        for per_block in by_block:
            table = tables[position]
            position += 1
            if table.shape[1] == 0:
                continue
            # Split this block's orders off before moving them to the front, so
            # that the transpose and the fold into real parts are one pass.
            block = jnp.transpose(per_block[index], (3, 2, 0, 1))  # [m, rows, sign, B]
            data = _split_complex(block.reshape(m1 - m0, block.shape[1], -1))
            # [m, k, rows] x [m, rows, C] -> [m, k, C]
            out = jnp.einsum("mkj,mjc->mkc", table, data, precision=_PRECISION)
            outputs.append(out.reshape(-1, out.shape[-1]))
    n_cols = outputs[0].shape[-1]
    outputs.append(jnp.zeros((1, n_cols), outputs[0].dtype))
    stacked = jnp.concatenate(outputs, axis=0)
    return stacked[forward_index]  # [ell, m, C]


def _latitude_inverse(plan, half, n_signs: int, tables):
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
    # One gather for every block, split into blocks: the gradient is one scatter and
    # one concatenate rather than a full-size scatter per block.
    counts = [
        (m1 - m0) * table.shape[1]
        for (m0, m1), table in zip(
            [b for b in layout.blocks for _ in layout.groups], tables, strict=True
        )
    ]
    gathered = jnp.split(flat[inverse_index], np.cumsum(counts)[:-1].tolist())
    per_group = [[] for _ in layout.groups]
    position = 0
    for m0, m1 in layout.blocks:
        for group in range(len(layout.groups)):
            table, coeffs = tables[position], gathered[position]
            position += 1
            n_k = table.shape[1]
            if n_k == 0:
                out = jnp.zeros((m1 - m0, n_cols, layout.n_rows), half.dtype)
            else:
                coeffs = coeffs.reshape(m1 - m0, n_k, n_cols)
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


def _analysis_tables(plan):
    """The tables of the latitude analysis: exact ones where the plan has them."""
    synthesis, analysis = plan.arrays[0], plan.arrays[1]
    return analysis if analysis else synthesis


def _fold_rows(plan, columns, equator_twice: bool = True):
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


def _unfold_rows(plan, per_group, equator_twice: bool = False):
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


def _negative_order_sign(plan):
    """+-1 relating a_ell,-m to the tables' -m output, broadcastable to [ell, m, B].

    Spin 0 (mirror-symmetric tables): (-1)^m. Other spins (+m tables on mirrored
    rows): (-1)^(ell + s).
    """
    size, dtype = plan.ell_max + 1, jnp.dtype(plan.dtype)
    if plan.layout.uses_parity:
        return _alternating(size, dtype)[None, :, None]
    return (_alternating(size, dtype) * (-1.0) ** plan.spin)[:, None, None]


def _coefficients_from_half(plan, half, conjugate_negative: bool):
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


def _half_from_coefficients(plan, a, with_negative: bool):
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


def _analyse_columns(plan, columns, tables, equator_twice: bool = True):
    """Latitude stage of the analysis: (sign, B, n_lat, L + 1) -> (B, L + 1, 2L + 1)."""
    size = plan.ell_max + 1
    n_signs, n_batch = columns.shape[0], columns.shape[1]
    groups = _fold_rows(plan, columns, equator_twice)
    half = _merge_complex(_latitude_forward(plan, groups, tables))  # [ell, m, (s, B)]
    half = half.reshape(size, size, n_signs, n_batch)
    return _coefficients_from_half(plan, half, conjugate_negative=n_signs == 1)


def _synthesise_columns(plan, a, tables, with_negative: bool, equator_twice):
    """Latitude stage of the synthesis: (B, L + 1, 2L + 1) -> (sign, B, n_lat, m)."""
    half = _half_from_coefficients(plan, a, with_negative)
    per_group = _latitude_inverse(plan, half, 1 + with_negative, tables)
    return _unfold_rows(plan, per_group, equator_twice)


def _spectrum_from_columns(plan, columns):
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


def _columns_from_spectrum(plan, spectrum):
    """Full (B, n_lat, n_lon) spectrum -> +m and -m columns (2, B, n_lat, L + 1)."""
    size = plan.ell_max + 1
    negative = spectrum[..., (-np.arange(size)) % plan.grid.n_lon]
    return jnp.stack([spectrum[..., :size], negative], axis=0)


def _complex_dtype(plan):
    return jnp.result_type(jnp.dtype(plan.dtype), jnp.complex64)


def _forward(plan, x, fast_vjp: bool = False):
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


def _forward_real(plan, x):
    """Real spin-0 fields (B, n_lat, n_lon): rfft, m >= 0 only."""
    size = plan.ell_max + 1
    real_dtype = jnp.dtype(plan.dtype)
    row_weights = plan.arrays[2][:, None]
    spectrum = jnp.fft.rfft(x.astype(real_dtype), axis=-1)[..., :size]
    columns = (spectrum * row_weights)[None]  # [1, B, rows, m]
    full = _analyse_columns(plan, columns, _analysis_tables(plan))
    return full.astype(_complex_dtype(plan))


def _forward_complex(plan, x):
    """Complex fields (B, n_lat, n_lon) -> (B, L + 1, 2L + 1)."""
    columns = _columns_from_spectrum(plan, jnp.fft.fft(x, axis=-1))
    columns = columns * plan.arrays[2][:, None]
    return _analyse_columns(plan, columns, _analysis_tables(plan))


def _forward_complex_transpose(plan, cotangent):
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


def _inverse(plan, a, is_real: bool, fast_vjp: bool = False):
    grid, ell_max = plan.grid, plan.ell_max
    size = ell_max + 1
    batch_shape = a.shape[:-2]
    a = a.reshape(-1, size, 2 * ell_max + 1).astype(_complex_dtype(plan))
    if is_real:
        field = _inverse_real(plan, a)
    else:
        field = (_inverse_complex_vjp if fast_vjp else _inverse_complex)(plan, a)
    return field.reshape(*batch_shape, grid.n_lat, grid.n_lon)


def _inverse_real(plan, a):
    """Real spin-0 synthesis from the m >= 0 half: inverse rfft."""
    grid, size = plan.grid, plan.ell_max + 1
    a = a * _validity(plan.ell_max, plan.spin, jnp.dtype(plan.dtype))
    columns = _synthesise_columns(plan, a, plan.arrays[0], False, equator_twice=False)
    n_freq = grid.n_lon // 2 + 1
    spectrum = jnp.pad(columns[0], ((0, 0), (0, 0), (0, n_freq - size)))
    field = jnp.fft.irfft(spectrum, n=grid.n_lon, axis=-1) * grid.n_lon
    return field.astype(jnp.dtype(plan.dtype))


def _inverse_complex(plan, a):
    """(B, L + 1, 2L + 1) -> complex fields (B, n_lat, n_lon)."""
    a = a * _validity(plan.ell_max, plan.spin, jnp.dtype(plan.dtype))
    columns = _synthesise_columns(plan, a, plan.arrays[0], True, equator_twice=False)
    spectrum = _spectrum_from_columns(plan, columns)
    return jnp.fft.ifft(spectrum, axis=-1) * plan.grid.n_lon


def _inverse_complex_transpose(plan, cotangent):
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
