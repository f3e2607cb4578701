import jax
import jax.numpy as jnp
import numpy as np
import pytest

from keras_sphere.layers.degree_mixing import ARITHMETIC_BOUND_MACS
from keras_sphere.layers.degree_mixing import GAUSS_MIN_PRODUCT
from keras_sphere.layers.degree_mixing import degree_block_width
from keras_sphere.layers.degree_mixing import degree_blocks
from keras_sphere.layers.degree_mixing import mix_degrees

ELL_MAX = 4


def _problem(rng, channels_in, channels_out, batch=3):
    shape = (batch, ELL_MAX + 1, 2 * ELL_MAX + 1, 2, channels_in)
    kernel_shape = (ELL_MAX + 1, 2, 2, channels_in, channels_out)
    coeffs = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    kernel = rng.normal(size=kernel_shape) + 1j * rng.normal(size=kernel_shape)
    return coeffs, kernel


def _valid():  # |m| <= ell, as (L + 1, 2L + 1)
    return (
        np.abs(np.arange(-ELL_MAX, ELL_MAX + 1))[None, :]
        <= np.arange(ELL_MAX + 1)[:, None]
    )


@pytest.mark.parametrize("degrees_per_block", [None, 1, 2, 5])
@pytest.mark.parametrize(
    "channels_in, channels_out, gauss",
    [(6, 4, False), (64, 64, True)],
    ids=["block-product", "gauss"],
)
def test_mix_degrees_equals_complex_einsum(
    rng, channels_in, channels_out, gauss, degrees_per_block
):
    # Oracle: the complex einsum in float64, zero where |m| > ell. The real forms
    # sum 2 * S_in * C_in float32 terms per output (24 and 256 here), and Gauss's
    # t3 - t1 - t2 cancels terms up to 2x larger than the result's; measured 8e-8
    # (block product) and 6e-7 (Gauss) of the largest output, bound 2e-6. Blocks of
    # 1, 2 (uneven: 2 + 2 + 1) and all 5 degrees cover the cut-and-join paths.
    assert (2 * channels_in * 2 * channels_out >= GAUSS_MIN_PRODUCT) == gauss
    coeffs, kernel = _problem(rng, channels_in, channels_out)
    expected = np.einsum("blmic,liocd->blmod", coeffs, kernel)
    expected *= _valid()[None, :, :, None, None]
    out = mix_degrees(
        coeffs.astype(np.complex64),
        kernel.real.astype(np.float32),
        kernel.imag.astype(np.float32),
        degrees_per_block=degrees_per_block,
    )
    assert out.shape == (3, 5, 9, 2, channels_out) and out.dtype == np.complex64
    np.testing.assert_allclose(
        out, expected, rtol=0, atol=2e-6 * np.abs(expected).max()
    )


@pytest.mark.parametrize("degrees_per_block", [1, 2, 5])
def test_mix_degrees_gradients_equal_the_einsum_gradients(rng, degrees_per_block):
    # The blocks are cut with a hand-written VJP (`_join_blocks`): its gradients
    # must be those of the plain masked einsum, for the coefficients (zero where
    # |m| > ell, which the layer ignores) and both kernel parts. Both sides are
    # float32 sums of 12 terms; measured 5e-7 of the largest gradient, bound 1e-5.
    coeffs, kernel = _problem(rng, 3, 2)
    coeffs = jnp.asarray(coeffs, jnp.complex64)
    kr = jnp.asarray(kernel.real, jnp.float32)
    ki = jnp.asarray(kernel.imag, jnp.float32)
    weights = jnp.asarray(rng.normal(size=(3, 5, 9, 2, 2)), jnp.float32)
    valid = jnp.asarray(_valid()[None, :, :, None, None], jnp.float32)

    def oracle(c, kr, ki):
        k = jax.lax.complex(kr, ki)
        out = jnp.einsum("blmic,liocd->blmod", c * valid, k, precision="highest")
        return out * valid

    def loss(mix):
        return lambda c, kr, ki: jnp.sum(weights * jnp.abs(mix(c, kr, ki)) ** 2)

    def ours(c, kr, ki):
        return mix_degrees(c, kr, ki, degrees_per_block=degrees_per_block)

    got = jax.grad(loss(ours), argnums=(0, 1, 2))(coeffs, kr, ki)
    want = jax.grad(loss(oracle), argnums=(0, 1, 2))(coeffs, kr, ki)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 * np.abs(w).max())


def test_degree_block_width():
    # Operation-bound layers (few rows): (L + 1) / 4 degrees per block, 4 to 16.
    assert degree_block_width(7) == 4
    assert degree_block_width(31) == 8
    assert degree_block_width(127) == 16
    assert degree_block_width(255) == 16
    # Arithmetic-bound layers: one degree per product, no padded orders.
    assert degree_block_width(15, 288, 128, 256) == 1
    assert 288 * 31 * 128 * 256 > ARITHMETIC_BOUND_MACS
    assert degree_blocks(4, 2) == ((0, 2), (2, 4), (4, 5))
    assert degree_blocks(4, 1) == tuple((ell, ell + 1) for ell in range(5))
