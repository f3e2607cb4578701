import numpy as np
import pytest

from keras_sphere.sphere import clenshaw_curtis_weights


def torus_weights(n):
    """Huffenberger-Wandelt torus weights (an independent construction, via the DFT)."""
    size = 2 * (n - 1)
    q = np.fft.fftfreq(size, 1.0 / size).astype(int)  # signed frequencies
    hat = np.zeros(size, complex)
    even = q % 2 == 0
    hat[even] = 2.0 / (1.0 - q[even] ** 2)
    hat[q == 1] = -1j * np.pi / 2
    hat[q == -1] = 1j * np.pi / 2
    return np.real(np.fft.ifft(hat))


def folded(torus, n):
    weights = torus[:n].copy()
    weights[1 : n - 1] += torus[2 * n - 2 - np.arange(1, n - 1)]
    return weights


@pytest.mark.parametrize("n_lat", [2, 3, 4, 5, 8, 9, 16, 33, 241, 721])
def test_weights_sum_to_two_and_are_symmetric_positive(n_lat):
    weights = clenshaw_curtis_weights(n_lat)
    np.testing.assert_allclose(weights.sum(), 2.0, rtol=1e-14)
    np.testing.assert_allclose(weights, weights[::-1], atol=1e-16)
    assert np.all(weights > 0)
    half = weights[: (n_lat + 1) // 2]
    assert np.all(np.diff(half) > 0), "weights grow towards the equator"


def test_oracles_from_the_anchor():
    # sphere-maths.md section 8: n = 4 folded weights [1/9, 8/9, 8/9, 1/9].
    np.testing.assert_allclose(
        clenshaw_curtis_weights(4), [1 / 9, 8 / 9, 8 / 9, 1 / 9], atol=1e-15
    )
    np.testing.assert_allclose(
        torus_weights(4),
        [0.11111111, 0.89789429, 0.89789429, 0.11111111, -0.0090054, -0.0090054],
        atol=1e-8,
    )
    np.testing.assert_allclose(
        clenshaw_curtis_weights(8)[:4],
        [0.020408, 0.190141, 0.352242, 0.437208],
        atol=1e-6,
    )
    assert clenshaw_curtis_weights(8)[0] == pytest.approx(1 / 49, abs=1e-16)
    assert clenshaw_curtis_weights(5)[0] == pytest.approx(1 / 15, abs=1e-16)
    assert clenshaw_curtis_weights(9)[0] == pytest.approx(1 / 63, abs=1e-16)


@pytest.mark.parametrize("n_lat", [4, 5, 8, 9, 16, 33, 241])
def test_equal_folded_torus_weights(n_lat):
    np.testing.assert_allclose(
        clenshaw_curtis_weights(n_lat), folded(torus_weights(n_lat), n_lat), atol=3e-16
    )


@pytest.mark.parametrize("n_lat", [5, 8, 17])
def test_exact_for_polynomials_up_to_degree_n_minus_1(n_lat):
    x = np.cos(np.pi * np.arange(n_lat) / (n_lat - 1))
    weights = clenshaw_curtis_weights(n_lat)
    top = n_lat if n_lat % 2 else n_lat - 1
    for degree in range(top + 1):
        exact = (1 - (-1) ** (degree + 1)) / (degree + 1)
        assert weights @ x**degree == pytest.approx(exact, abs=1e-14)


def test_too_few_rows():
    with pytest.raises(ValueError, match="at least 2 rows"):
        clenshaw_curtis_weights(1)
