"""Wigner Delta matrices Delta^ell = d^ell(pi / 2), made one degree at a time.

Rotating coefficients through the Delta factorisation (``rotation.py``) needs
Delta^ell for every degree up to L; stored together they hold (L + 1)(2L + 1)^2
numbers (17 GB in float32 at L = 1023). `DeltaRecursion` keeps two degrees and makes
the next from them, so a caller can use each matrix and drop it: memory O(L^2).

Method: the three-term recursion in ell of ``wigner.py`` (``sphere-maths.md`` 5.1) at
beta = pi / 2, where cos(beta) = 0, run for all pairs (m', m) at once:

    ell u_ell(m') u_ell(m) d^{ell+1}_{m'm} = -(2 ell + 1) m' m d^ell_{m'm}
        - (ell + 1) u_{ell-1}(m') u_{ell-1}(m) d^{ell-1}_{m'm},
    u_ell(m) = sqrt((ell + 1)^2 - m^2).

Each pair starts at ell0 = max(|m'|, |m|) from its closed form, at pi / 2
d^ell0_{ell0, m} = (-1)^(ell0 - m) sqrt(C(2 ell0, ell0 + m)) 2^-ell0 and
d^ell0_{m', ell0} = sqrt(C(2 ell0, ell0 + m')) 2^-ell0 (log-gamma for the binomial).
Only the quadrant m', m >= 0 is made; Delta_{m', -m} = (-1)^(ell + m') Delta_{m' m} and
Delta_{-m', m} = (-1)^(ell + m) Delta_{m' m} give the rest.

Range: start values fall to 2^-ell0 (the corner m' = m = ell0), below float64's normal
range past ell0 = 1022. The recursion therefore carries the scaled quadrant
S^ell_{m'm} = Delta^ell_{m'm} 2^((m' + m) / 4): a fixed, separable scale under which
every start value is at least 2^(-ell0 / 2) and every value at most 2^(L / 2), so
float64 holds the whole recursion without rescaling for L <= `MAX_ELL`, and callers
apply the scale as O(L) vector products (Delta^ell = diag(scale) S^ell diag(scale)).

Accuracy (float64, tests in ``tests/sphere/test_rotation.py``): equal to the tables of
``wigner.wigner_delta`` to 6e-15 up to L = 200; Delta^ell is orthogonal to 2.4e-12 at
ell = 1023 and 7.7e-12 at ell = 2000.
Cost: five float64 passes over the (ell + 1)^2 quadrant per degree, 5 L^3 / 3 in all.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

__all__ = ["MAX_ELL", "DeltaRecursion", "delta_quadrants"]

# S = Delta * 2^(SCALE_EXPONENT * (m' + m)); see the module docstring for the bounds.
SCALE_EXPONENT = 0.25
# Largest degree for which start values stay >= 2^-1000 and values <= 2^1000.
MAX_ELL = 2000


class DeltaRecursion:
    """The scaled quadrants S^ell of Delta^ell for ell = 0, 1, ..., ell_max, in turn.

    S^ell[m', m] = Delta^ell_{m' m} 2^((m' + m) / 4) for 0 <= m', m <= ell, float64.
    One step makes S^(ell + 1) from S^ell and S^(ell - 1); a step may be split into
    blocks of rows (`step_rows`) so that a caller can use each block while it is in
    cache::

        recursion.begin_step()
        for start, stop in blocks:          # covering rows 0 .. ell + 1
            recursion.step_rows(start, stop)
            use(recursion.upcoming[start:stop])
        recursion.end_step()

    or in one call, ``recursion.advance()``. Memory: three (ell_max + 1)^2 float64
    buffers (25 MB at ell_max = 1023).

    Attributes:
        ell_max: the last degree.
        ell: the degree of `current`.
        scale: float64, shape (ell_max + 1,), 2^(-m / 4):
            Delta^ell = scale[:, None] * S^ell * scale[None, :] (sliced to ell + 1).
    """

    def __init__(self, ell_max: int):
        if not 0 <= ell_max <= MAX_ELL:
            raise ValueError(
                f"DeltaRecursion supports 0 <= ell_max <= {MAX_ELL} (float64 range of "
                f"its scaled values). Received: ell_max={ell_max}"
            )
        size = ell_max + 1
        self.ell_max = ell_max
        self.ell = 0
        self.scale = np.exp2(-SCALE_EXPONENT * np.arange(size))
        self._current = np.zeros((size, size))
        self._current[0, 0] = 1.0  # Delta^0 = [[1]]
        self._previous = np.zeros((size, size))  # S^(ell - 1); then S^(ell + 1)
        self._scratch = np.zeros((size, size))
        self._factors = None

    @property
    def current(self) -> np.ndarray:
        """S^ell, a float64 view of shape (ell + 1, ell + 1)."""
        return self._current[: self.ell + 1, : self.ell + 1]

    @property
    def upcoming(self) -> np.ndarray:
        """S^(ell + 1) during a step, shape (ell + 2, ell + 2).

        Its rows are valid once `step_rows` has made them.
        """
        return self._previous[: self.ell + 2, : self.ell + 2]

    def begin_step(self) -> None:
        """Start making S^(ell + 1): its new edge (start values) and the factors."""
        ell = self.ell
        if ell >= self.ell_max:
            raise ValueError(f"The recursion has reached ell_max = {self.ell_max}.")
        row, column = _start_values(ell + 1)
        self._previous[ell + 1, : ell + 2] = row
        self._previous[: ell + 1, ell + 1] = column[:-1]
        if ell == 0:
            self._factors = None  # d^1_00(pi / 2) = cos(pi / 2) = 0
            return
        m = np.arange(ell + 1, dtype=np.float64)
        u = np.sqrt((ell + 1) ** 2 - m**2)
        p = m / u
        q = np.sqrt(ell**2 - m**2) / u
        self._factors = (p, -(2 * ell + 1) / ell * p, q, -(ell + 1) / ell * q)

    def step_rows(self, start: int, stop: int) -> None:
        """Make rows [start, stop) of S^(ell + 1) (rows past ell + 1 are ignored)."""
        n = self.ell + 1  # rows and columns that the recursion fills
        stop = min(stop, n)
        if start >= stop:
            return
        nxt = self._previous[start:stop, :n]  # holds S^(ell - 1) until overwritten
        if self._factors is None:
            nxt[...] = 0.0
            return
        p, row_p, q, row_q = self._factors
        term = self._scratch[start:stop, :n]
        np.multiply(self._current[start:stop, :n], p, out=term)
        term *= row_p[start:stop, None]  # -(2 ell + 1)/ell p_m' p_m S^ell
        nxt *= q
        nxt *= row_q[start:stop, None]  # -(ell + 1)/ell q_m' q_m S^(ell - 1)
        nxt += term

    def end_step(self) -> None:
        """Finish the step: S^(ell + 1) becomes `current`."""
        self._previous, self._current = self._current, self._previous
        self.ell += 1

    def advance(self) -> None:
        """One whole step: S^ell -> S^(ell + 1)."""
        self.begin_step()
        self.step_rows(0, self.ell + 1)
        self.end_step()


def _start_values(ell0: int) -> tuple[np.ndarray, np.ndarray]:
    """Scaled start values of the pairs that start at degree ell0.

    Returns:
        (row, column), float64, shape (ell0 + 1,) each: S^ell0[ell0, a] and
        S^ell0[a, ell0] for a = 0 .. ell0 (the two agree at a = ell0).
    """
    a = np.arange(ell0 + 1, dtype=np.float64)
    log_binomial = gammaln(2 * ell0 + 1) - gammaln(ell0 + a + 1) - gammaln(ell0 - a + 1)
    log2_value = 0.5 * log_binomial / np.log(2) - ell0 + SCALE_EXPONENT * (ell0 + a)
    column = np.exp2(log2_value)
    row = np.where((ell0 - a) % 2 == 1, -column, column)
    return row, column


def delta_quadrants(ell_max: int):
    """Yield Delta^ell_{m' m} for 0 <= m', m <= ell, for ell = 0, 1, ..., ell_max.

    Each item is a new float64 array of shape (ell + 1, ell + 1) indexed [m', m]
    (tests and small uses; `rotation.py` uses `DeltaRecursion` block by block).
    """
    recursion = DeltaRecursion(ell_max)
    for ell in range(ell_max + 1):
        if ell:
            recursion.advance()
        scale = recursion.scale[: ell + 1]
        yield scale[:, None] * recursion.current * scale[None, :]
