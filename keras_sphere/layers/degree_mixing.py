"""`mix_degrees`: the per-degree channel mixing at the heart of a spectral convolution.

A spin-spherical convolution multiplies the coefficients of each degree ell by that
degree's (spins x channels) kernel. How those L + 1 products are laid out decides
the speed on CPU: one GEMM per degree is O(L) operations (slow to compile and run
at L = 127), one padded batched GEMM for all degrees multiplies the orders
|m| > ell for nothing. Degrees therefore run in blocks (`degree_block_width`),
and the blocks are cut out and put back with explicit gradients so that neither
direction costs O(L) full-size arrays.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from keras_sphere.layers.spins import real_block_matrix

__all__ = [
    "ARITHMETIC_BOUND_MACS",
    "GAUSS_MIN_PRODUCT",
    "degree_block_width",
    "mix_degrees",
]

# Three real GEMMs per block of degrees (Gauss) when width_in * width_out is at
# least this (QM9 blocks: 256 x 256 and more), else one real block GEMM (its fewer,
# larger operations win for narrow layers such as spherical MNIST's).
GAUSS_MIN_PRODUCT = 128 * 128

# Above this many real multiply-adds per degree (rows x (2L + 1) x width_in x
# width_out) a convolution is bound by arithmetic, and `mix_degrees` multiplies one
# degree at a time rather than padding blocks (QM9's 288 atom spheres at L = 15).
ARITHMETIC_BOUND_MACS = 64 * 2**20


def degree_block_width(
    ell_max: int, rows: int = 1, width_in: int = 1, width_out: int = 1
) -> int:
    """Degrees per batched product of `mix_degrees`.

    (L + 1) / 4, from 4 to 16, where a layer is bound by the number of operations
    XLA runs and compiles; 1 where it is bound by arithmetic (more than
    `ARITHMETIC_BOUND_MACS` per degree: `rows` examples of 2L + 1 orders, times
    `width_in` x `width_out`), since blocks also multiply the orders |m| > ell of
    their lower degrees. Measured forward and backward for one layer against one
    product per degree: at L = 127 (batch 1, 64 x 64 real widths) 2.29 s -> 0.11 s
    per step and 38 s -> 5.6 s of compilation with 16 degrees per block (32: 0.16 s
    and 3.3 s; all 128 at once: 0.22 s and 1.2 s); at L = 31, 81 -> 7 ms with 8; at
    L = 7 (batch 1, 256 x 256) 12 -> 10 ms with 4; at L = 7 with 288 rows and
    512 x 512, 0.57 s -> 0.42 s with 1 and 0.61 s with 4.

    Args:
        ell_max: the bandlimit L.
        rows: examples (batch) multiplied.
        width_in: real input width per degree (spins x channels).
        width_out: real output width per degree.

    Returns:
        int >= 1.
    """
    macs = rows * (2 * ell_max + 1) * width_in * width_out
    if macs > ARITHMETIC_BOUND_MACS:
        return 1
    return min(16, max(4, (ell_max + 1) // 4))


def degree_blocks(ell_max: int, width: int) -> tuple[tuple[int, int], ...]:
    """The blocks [l0, l1) of `width` degrees that cover 0..ell_max."""
    return tuple(
        (l0, min(l0 + width, ell_max + 1)) for l0 in range(0, ell_max + 1, width)
    )


def _cut_blocks(coeffs, blocks):
    """Per block [l0, l1): coeffs[:, l0:l1, orders |m| <= l1 - 1]."""
    ell_max = coeffs.shape[1] - 1
    return [coeffs[:, l0:l1, ell_max - (l1 - 1) : ell_max + l1] for l0, l1 in blocks]


def _join_blocks(parts, blocks):
    """Inverse of `_cut_blocks`: the blocks padded to 2L + 1 orders, concatenated.

    Entries of a block's orders |m| > ell are kept as they are (`mix_degrees`
    zeroes them first).
    """
    import jax.numpy as jnp

    ell_max = blocks[-1][1] - 1
    padded = []
    for part, (_, l1) in zip(parts, blocks, strict=True):
        pad = ell_max - (l1 - 1)
        widths = [(0, 0)] * part.ndim
        widths[2] = (pad, pad)
        padded.append(jnp.pad(part, widths))
    return jnp.concatenate(padded, axis=1)


@functools.cache
def _cut_with_join_vjp(blocks):
    """`_cut_blocks` whose gradient is one `_join_blocks`.

    JAX's own transpose of each slice pads it to the full array and sums the
    copies: one full-size array per block, O(L) of them with one degree per
    block (measured 0.52 -> 0.49 s for a QM9 layer's forward and backward, 288
    atoms at L = 15, 128 -> 256 real widths, one degree per block).
    """
    cut = jax.custom_vjp(lambda coeffs: _cut_blocks(coeffs, blocks))
    cut.defvjp(
        lambda coeffs: (_cut_blocks(coeffs, blocks), None),
        lambda _, cotangents: (_join_blocks(cotangents, blocks),),
    )
    return cut


@jax.named_scope("mix_degrees")  # names the products in profiles
def mix_degrees(coeffs, kernel_real, kernel_imag, degrees_per_block=None):
    """The spectral convolution: each degree mixed across spins and channels.

    out[b, ell, m, o, d] = sum_{i, c} coeffs[b, ell, m, i, c] K[ell, i, o, c, d] for
    |m| <= ell, zero elsewhere, with K = kernel_real + i kernel_imag.

    Degrees run in blocks of `degree_block_width`: a block [l0, l1) takes the orders
    |m| <= l1 - 1 of its degrees and multiplies them by each degree's kernel in one
    batched real product (degree as the batch dimension), so that a layer is a
    fixed handful of operations at any bandlimit. With x = a + i b and
    K = Kr + i Ki, wide products (width_in * width_out >= `GAUSS_MIN_PRODUCT`)
    run as three real products (Gauss): t1 = a Kr, t2 = b Ki,
    t3 = (a + b)(Kr + Ki), out = (t1 - t2) + i (t3 - t1 - t2), 3/4 of the
    arithmetic of the real block product [a, b] [[Kr, Ki], [-Ki, Kr]] (measured
    1.05-1.2x faster forward and backward on the QM9 blocks; relative error 1.3e-6
    against a float64 einsum, against 1.0e-6 for the block product). Narrow ones
    (the spherical-MNIST layers, 32-64 wide) run as the one block product.

    Args:
        coeffs: complex, (batch, L + 1, 2L + 1, S_in, C_in); entries with |m| > ell
            are ignored.
        kernel_real: float32, (L + 1, S_in, S_out, C_in, C_out).
        kernel_imag: float32, same shape.
        degrees_per_block: degrees per batched product; None picks
            `degree_block_width` for these shapes.

    Returns:
        complex64, (batch, L + 1, 2L + 1, S_out, C_out).
    """
    import jax.numpy as jnp

    batch, n_ell, _, n_in, c_in = coeffs.shape
    ell_max = n_ell - 1
    n_out, c_out = kernel_real.shape[2], kernel_real.shape[4]
    width_in, width_out = n_in * c_in, n_out * c_out

    def per_degree(part):  # [ell, i, o, c, d] -> [ell, (i c), (o d)]
        part = jnp.asarray(part, jnp.float32)
        return jnp.transpose(part, (0, 1, 3, 2, 4)).reshape(n_ell, width_in, width_out)

    real, imag = per_degree(kernel_real), per_degree(kernel_imag)
    gauss = width_in * width_out >= GAUSS_MIN_PRODUCT
    if gauss:
        both = real + imag
    else:
        block = real_block_matrix(real, imag)  # [ell, 2 (i c), 2 (o d)]

    def product(rows, kernel):  # [b, l, m, k] x [l, k, d] -> [b, l, m, d]
        b, n_l, m, k = rows.shape
        if n_l == 1:
            # One degree: a plain 2D matrix product, whose gradients are 2D GEMMs
            # too (with several contracted axes XLA's CPU backend runs them
            # slower: 0.82 -> 0.50 s for the QM9 layer above).
            out = jnp.dot(rows.reshape(b * m, k), kernel[0], precision="highest")
            return out.reshape(b, 1, m, -1)
        # Degree-major rows, so that the product and both its gradients are
        # batched GEMMs with one contracted axis (QM9's first layer, L = 15 with
        # 4 degrees per block: 0.22 -> 0.16 s; the weather_64 step 0.28 -> 0.11 s).
        rows = jnp.transpose(rows, (1, 0, 2, 3)).reshape(n_l, b * m, k)
        out = jnp.einsum("lnk,lkd->lnd", rows, kernel, precision="highest")
        return jnp.transpose(out.reshape(n_l, b, m, -1), (1, 0, 2, 3))

    width = degrees_per_block or degree_block_width(ell_max, batch, width_in, width_out)
    blocks = degree_blocks(ell_max, int(width))
    cut = _cut_with_join_vjp(blocks)
    outputs = []
    for rows, (l0, l1) in zip(cut(coeffs), blocks, strict=True):
        top = l1 - 1  # the block's orders: |m| <= top
        rows = rows.reshape(batch, l1 - l0, 2 * top + 1, width_in)
        rows_real = rows.real.astype(jnp.float32)
        rows_imag = rows.imag.astype(jnp.float32)
        if gauss:
            t1 = product(rows_real, real[l0:l1])
            t2 = product(rows_imag, imag[l0:l1])
            t3 = product(rows_real + rows_imag, both[l0:l1])
            out = jax.lax.complex(t1 - t2, t3 - t1 - t2)
        else:
            parts = product(
                jnp.concatenate([rows_real, rows_imag], axis=-1), block[l0:l1]
            )
            out = jax.lax.complex(parts[..., :width_out], parts[..., width_out:])
        if l1 - l0 > 1:
            # Orders |m| > ell of the block's lower degrees were multiplied: zero them.
            exists = np.arange(l0, l1)[:, None] >= np.abs(np.arange(-top, top + 1))
            out = out * exists[None, :, :, None].astype(np.float32)
        outputs.append(out.reshape(batch, l1 - l0, 2 * top + 1, n_out, c_out))
    return _join_blocks(outputs, blocks)
