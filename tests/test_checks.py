"""check_finite: refuse NaN and infinity at the entry points, naming the examples."""

import jax.numpy as jnp
import numpy as np
import pytest

from keras_sphere._checks import check_finite


def test_finite_arrays_pass_through_unchanged():
    field = np.ones((3, 4, 4), "float32")
    assert check_finite(field, "maps") is field
    assert check_finite([1, 2, 3], "labels") == [1, 2, 3]
    integers = np.arange(6).reshape(2, 3)
    assert check_finite(integers, "labels") is integers
    assert check_finite(jnp.ones((2, 2), jnp.complex64), "coeffs") is not None


def test_names_the_offending_examples_and_what_to_do():
    maps = np.zeros((10, 4, 4), "float32")
    maps[2, 1, 1] = np.nan
    maps[7] = np.inf
    message = (
        r"maps has NaN or infinite values \(1 NaN and 16 infinite entries\) in 2 of "
        r"10 examples, at indices \[2, 7\] along axis 0\. Drop or repair those "
        r"examples and call again, e\.g\. keep = np\.isfinite\(maps\)"
    )
    with pytest.raises(ValueError, match=message):
        check_finite(maps, "maps")
    # JAX and complex input; the list of indices is cut after five.
    coeffs = np.zeros((8, 3), np.complex64)
    coeffs[:, 0] = complex(0, np.nan)
    with pytest.raises(
        ValueError, match=r"8 of 8 examples, at indices \[0, 1, 2, 3, 4, \.\.\.\]"
    ):
        check_finite(jnp.asarray(coeffs), "coeffs")


def test_other_axes_and_whole_arrays():
    channels_first = np.ones((3, 5))
    channels_first[1, 4] = np.nan
    with pytest.raises(
        ValueError, match=r"in 1 of 5 examples, at indices \[4\] along axis 1\."
    ):
        check_finite(channels_first, "features", axis=1)
    with pytest.raises(ValueError, match=r"along axis 1\. Fill the gaps"):
        check_finite(channels_first, "features", axis=-1, hint="Fill the gaps.")
    # axis=None: one example; the message gives positions.
    with pytest.raises(
        ValueError,
        match=r"alm has 1 non-finite value \(1 NaN and 0 infinite\) among 15, "
        r"at \[\(1, 4\)\]\. Repair them",
    ):
        check_finite(channels_first, "alm", axis=None)
    with pytest.raises(ValueError, match=r"among 4, at \[2\]"):
        check_finite(np.array([0.0, 1.0, np.inf, 2.0]), "healpix_map", axis=None)
