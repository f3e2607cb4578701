"""Packing and unpacking the degrees of spectral coefficients."""

import numpy as np
import pytest

from keras_sphere.layers.degree_packing import pack_degrees
from keras_sphere.layers.degree_packing import unpack_degrees


def test_degree_layout_helpers_and_their_gradients(rng):
    """pack / unpack against plain indexing, values and gradients (gathers that are
    each other's VJP, against JAX's transpose of slicing: pure data movement, so
    equal up to the order of additions of zeros, 1e-6)."""
    import jax
    import jax.numpy as jnp

    ell_max = 3
    shape = (2, ell_max + 1, 2 * ell_max + 1, 2, 3)
    coeffs = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype("complex64")
    weights = rng.normal(size=(2, (ell_max + 1) ** 2, 2, 3)).astype("float32")

    def plain_rows(x):
        return [x[:, ell, ell_max - ell : ell_max + ell + 1] for ell in range(4)]

    packed = pack_degrees(coeffs, ell_max)
    np.testing.assert_array_equal(
        np.asarray(packed), np.concatenate(plain_rows(coeffs), axis=1)
    )
    valid = np.abs(np.arange(-ell_max, ell_max + 1))[None, :] <= np.arange(4)[:, None]
    np.testing.assert_array_equal(
        np.asarray(unpack_degrees(packed, ell_max)),
        coeffs * valid[None, :, :, None, None],
    )

    def loss(pack):
        # Pack, unpack and pack again, so that both backward passes are exercised.
        return lambda x: jnp.sum(
            jnp.abs(pack(unpack_degrees(pack(x), ell_max))) * weights
        )

    expected = jax.grad(loss(lambda x: jnp.concatenate(plain_rows(x), axis=1)))(coeffs)
    actual = jax.grad(loss(lambda x: pack_degrees(x, ell_max)))(coeffs)
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-6)
    with pytest.raises(ValueError, match="degrees on axis 1"):
        pack_degrees(coeffs, ell_max + 1)
    with pytest.raises(ValueError, match="entries on axis 1"):
        unpack_degrees(packed[:, 1:], ell_max)
