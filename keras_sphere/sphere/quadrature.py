"""Quadrature weights of the equiangular grid with both poles.

The colatitude nodes theta_j = pi * j / (n_lat - 1) are the Chebyshev extreme points
x_j = cos(theta_j), so the interpolatory quadrature on them is Clenshaw-Curtis. These
weights equal the Huffenberger-Wandelt torus weights folded onto the sphere rows
(``sphere-maths.md`` section 2). The weight of a sample in row j of an (n_lat, n_lon)
grid is q_j = (2 pi / n_lon) * W_j; the q_j of all samples sum to 4 pi.
"""

from __future__ import annotations

import numpy as np

__all__ = ["clenshaw_curtis_weights"]


def clenshaw_curtis_weights(n_lat: int) -> np.ndarray:
    """Clenshaw-Curtis weights W_j for integrating over x = cos(theta) in [-1, 1].

    Args:
        n_lat: number of colatitude rows including both poles, at least 2.

    Returns:
        float64, shape (n_lat,); sum 2. Exact for polynomials in cos(theta) of degree
        n_lat - 1 (n_lat for odd n_lat).

    Raises:
        ValueError: if n_lat < 2.
    """
    if n_lat < 2:
        raise ValueError(
            f"A grid with both poles needs at least 2 rows. Received: n_lat={n_lat}"
        )
    n = n_lat - 1
    theta = np.pi * np.arange(n_lat) / n
    k = np.arange(n // 2 + 1)
    b = np.full(k.shape, 2.0)
    b[0] = 1.0
    if n % 2 == 0:
        b[-1] = 1.0
    c = np.full(n_lat, 2.0)
    c[0] = c[-1] = 1.0
    # W_j = (c_j / N) sum_k b_k cos(2 k theta_j) / (1 - 4 k^2)
    terms = b / (1.0 - 4.0 * k**2)  # [k]
    weights = c / n * (np.cos(2.0 * np.outer(theta, k)) @ terms)  # [j]
    return weights
