"""Rotations of spherical fields and their coefficients.

Convention (``sphere-maths.md`` section 3.2): ZYZ Euler angles, active rotations
R = R_z(alpha) R_y(beta) R_z(gamma) (scipy ``Rotation.from_euler("ZYZ", ...)``, upper
case = intrinsic), acting on fields as (R f)(x) = f(R^-1 x). Coefficients transform as

    a'_ell,m = sum_m' e^{-i m alpha} d^ell_{m m'}(beta) e^{-i m' gamma} a_ell,m',

for every spin. The Wigner d-matrix is applied through the Delta factorisation
d^ell_{m m'}(beta) = i^(m - m') sum_k Delta^ell_{k m} Delta^ell_{k m'} e^{-i k beta}, so
angles may be traced values (rotation augmentation inside jitted code); the cost is
O(L^3) per field. Two ways to get Delta, chosen by bandlimit:

* L <= `_TABLE_MAX_ELL`: all Delta^ell as one cached device table (``wigner.py``),
  applied by two einsums: fastest at small L, jit-compiled, differentiable.
* larger L: Delta^ell made degree by degree (``delta_recursion.py``) on the host in
  float64 and applied as it is made, by NumPy/BLAS; memory O(L^2) instead of the
  (L + 1)(2L + 1)^2 table (17 GB in float32 at L = 1023). Inside a trace it runs as a
  host callback (`jax.pure_callback`), so it is not differentiable. The crossover was
  measured with ``benchmarks/rotation.py --crossover``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from keras_sphere.sphere.delta_recursion import DeltaRecursion
from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.sht import _check_coefficient_shape
from keras_sphere.sphere.sht import isht
from keras_sphere.sphere.sht import sht
from keras_sphere.sphere.sht_plan import runtime_inputs
from keras_sphere.sphere.wigner import wigner_delta

__all__ = ["rotate_coefficients", "rotate_field"]

# Largest bandlimit rotated with the cached Delta table (8 MB in float32 at 80): the
# two ways take the same time at L = 80 on 2 CPU cores, and the recursion is 2-5x
# faster from L = 96 (benchmarks/rotation.py --crossover).
_TABLE_MAX_ELL = 80
# Rows of the Delta quadrant per block of the degree-by-degree kernel: each block is
# made and used while it is in the CPU's cache.
_BLOCK_BYTES = 160 * 1024


@functools.lru_cache(maxsize=8)
def _delta_tables(ell_max: int, dtype: str):
    # Built eagerly even when first requested inside a trace, so the cache never holds
    # a tracer. Emptied by `clear_cache` (caches.py).
    with jax.ensure_compile_time_eval():
        return jnp.asarray(wigner_delta(ell_max).astype(dtype))


def _euler_angles(rotation) -> tuple:
    """(alpha, beta, gamma) from a 3-sequence or a scipy Rotation."""
    if hasattr(rotation, "as_euler"):
        return tuple(rotation.as_euler("ZYZ"))
    if len(rotation) != 3:
        raise ValueError(
            "rotation must be (alpha, beta, gamma) ZYZ Euler angles in radians or a "
            f"scipy.spatial.transform.Rotation. Received: {rotation!r}"
        )
    return tuple(rotation)


def rotate_coefficients(a, alpha, beta, gamma):
    """Rotate padded spherical harmonic coefficients by ZYZ Euler angles.

    Up to L = 80 the rotation uses a cached table of every Delta^ell (jit-compiled,
    differentiable); above, Delta^ell is made degree by degree on the host in float64
    (memory O(L^2): 0.2 GB and about 7 s per field at L = 1023 on 2 busy CPU cores;
    not differentiable). See the module docstring.

    Args:
        a: complex array, shape (..., L + 1, 2L + 1), padded layout of any spin.
        alpha: first rotation angle about z, radians (scalar, may be traced).
        beta: rotation angle about y, radians.
        gamma: second rotation angle about z, radians.

    Returns:
        complex array of the same shape: coefficients of (R f)(x) = f(R^-1 x);
        complex128 for complex128 input in float64 mode, else complex64.
    """
    a = jnp.asarray(a)
    ell_max = _check_coefficient_shape(a.shape)
    real_dtype = "float64" if a.dtype == jnp.complex128 else "float32"
    if ell_max <= _TABLE_MAX_ELL:
        return _rotate_with_tables(a, alpha, beta, gamma, real_dtype)
    return _rotate_by_degree(a, alpha, beta, gamma, real_dtype)


def _rotate_with_tables(a, alpha, beta, gamma, real_dtype: str):
    """The rotation with the cached table of all Delta^ell; O(L^3) memory."""
    ell_max = a.shape[-2] - 1
    complex_dtype = jnp.complex128 if real_dtype == "float64" else jnp.complex64
    delta = _delta_tables(ell_max, real_dtype)  # [ell, k, m]
    traced = any(isinstance(v, jax.core.Tracer) for v in (a, alpha, beta, gamma))
    if traced:
        delta = runtime_inputs(delta)
    a = a.astype(complex_dtype)
    orders = jnp.arange(-ell_max, ell_max + 1)
    i_power = jnp.asarray([1, 1j, -1, -1j], complex_dtype)[orders % 4]  # i^m

    def phase(angle):
        return jnp.exp(-1j * orders * jnp.asarray(angle, real_dtype)).astype(
            complex_dtype
        )

    b = a * (phase(gamma) * jnp.conj(i_power))  # e^{-i m' gamma} i^{-m'}
    c = jnp.einsum("lkn,...ln->...lk", delta.astype(complex_dtype), b)
    c = c * phase(beta)  # e^{-i k beta}
    out = jnp.einsum("lkm,...lk->...lm", delta.astype(complex_dtype), c)
    return out * (i_power * phase(alpha))


def _rotate_by_degree(a, alpha, beta, gamma, real_dtype: str):
    """The rotation with Delta made degree by degree on the host (NumPy float64)."""
    complex_dtype = np.complex128 if real_dtype == "float64" else np.complex64

    def host(coeffs, *angles):
        return _rotate_by_degree_numpy(coeffs, *angles).astype(complex_dtype)

    args = (a, alpha, beta, gamma)
    if not any(isinstance(v, jax.core.Tracer) for v in args):
        return jnp.asarray(host(np.asarray(a), alpha, beta, gamma))
    angles = [jnp.asarray(v, real_dtype) for v in (alpha, beta, gamma)]

    @jax.custom_jvp
    def on_host(coeffs, *angles):
        return jax.pure_callback(
            host,
            jax.ShapeDtypeStruct(coeffs.shape, complex_dtype),
            coeffs,
            *angles,
            vmap_method="broadcast_all",  # the host kernel takes per-field angles
        )

    @on_host.defjvp
    def _no_derivative(primals, tangents):
        raise NotImplementedError(
            f"rotate_coefficients has no derivative for L > {_TABLE_MAX_ELL} (here "
            f"L = {a.shape[-2] - 1}): at that size it runs on the host, degree by "
            "degree. Wrap its inputs in jax.lax.stop_gradient, or differentiate at "
            f"L <= {_TABLE_MAX_ELL}."
        )

    return on_host(a.astype(complex_dtype), *angles)


def _rotate_by_degree_numpy(coeffs, alpha, beta, gamma) -> np.ndarray:
    """Rotate coefficients in NumPy float64, making Delta^ell one degree at a time.

    Uses the quadrant Q = Delta^ell[m' >= 0, m >= 0] only (``delta_recursion.py``) and
    its symmetries Q[k, m] = t_k t_m Q[m, k], Delta_{k,-n} = t_k Q[k, n] and
    Delta_{-k,n} = t_n Q[k, n] with t_j = (-1)^(ell + j). With b_n = i^-n
    e^{-i n gamma} a_n and bn_n = b_{-n} (bn_0 = 0), the rows k with t_k = s give

        c_k = (Q (b + s bn))_k,  c_-k = (Q t (b + s bn))_k;

    with c'_k = e^{-i k beta} c_k and v = c'_+ + s c'_- (c'_-0 = 0), the rows m with
    t_m = s give out_m = s (Q t v)_m and out_-m = s (Q v)_m; finally
    a'_m = i^m e^{-i m alpha} out_m. Both products of a degree read rows of one parity
    of Q, so each costs (ell + 1)^2 / 2 multiply-adds per real column; they run block
    by block right after the recursion makes each block of rows (stage 1 of degree
    ell + 1 and stage 2 of degree ell share the pass).

    Args:
        coeffs: complex array, shape (..., L + 1, 2L + 1), the padded layout.
        alpha: first angle, radians: a scalar, or an array whose shape matches the
            leading axes of `coeffs` from the left (one rotation per field).
        beta: as `alpha`.
        gamma: as `alpha`.

    Returns:
        complex128, shape broadcast(coeffs.shape[:-2], angles) + (L + 1, 2L + 1).
        Memory: three (L + 1)^2 float64 buffers for the recursion (25 MB at
        L = 1023) plus a few complex128 copies of the input.
    """
    coeffs = np.asarray(coeffs)
    ell_max = coeffs.shape[-2] - 1
    lead, (alpha, beta, gamma) = _per_field_angles(
        coeffs.shape[:-2], alpha, beta, gamma
    )
    coeffs = np.broadcast_to(coeffs, (*lead, *coeffs.shape[-2:]))
    coeffs = coeffs.reshape(-1, ell_max + 1, 2 * ell_max + 1)  # [field, ell, m]
    orders = np.arange(-ell_max, ell_max + 1)
    i_power = np.array([1, 1j, -1, -1j])[orders % 4]
    b = coeffs * (np.exp(-1j * orders * gamma[:, None]) / i_power)[:, None, :]
    kernel = _DegreeKernel(b, beta)
    out = kernel.run()
    out *= (i_power * np.exp(-1j * orders * alpha[:, None]))[:, None, :]
    return out.reshape(*lead, ell_max + 1, 2 * ell_max + 1)


def _per_field_angles(lead, *angles):
    """Angles as float64 arrays of shape (fields,), aligned with `lead` from the left.

    Returns:
        (the broadcast leading shape, [one float64 array per angle, flattened]).
    """
    arrays = [np.asarray(v, np.float64) for v in angles]
    padded = [v.reshape(v.shape + (1,) * (len(lead) - v.ndim)) for v in arrays]
    try:
        if any(v.ndim > len(lead) for v in arrays):
            raise ValueError
        shape = np.broadcast_shapes(tuple(lead), *(v.shape for v in padded))
    except ValueError:
        raise ValueError(
            "Per-field angles must match the leading axes of the coefficients from "
            f"the left. Received coefficient axes {tuple(lead)} and angle shapes "
            f"{[v.shape for v in arrays]}."
        ) from None
    return shape, [np.broadcast_to(v, shape).reshape(-1) for v in padded]


class _DegreeKernel:
    """Both Delta products of every degree, pipelined with the Delta recursion."""

    def __init__(self, b, beta):
        self.b = b  # [field, ell, m]: coefficients times i^-m e^{-i m gamma}
        self.n_fields = b.shape[0]
        self.ell_max = b.shape[1] - 1
        self.recursion = DeltaRecursion(self.ell_max)
        self.scale = self.recursion.scale
        self.beta_phase = np.exp(-1j * np.arange(self.ell_max + 1)[:, None] * beta)

    def run(self) -> np.ndarray:
        ell_max, recursion = self.ell_max, self.recursion
        out = np.zeros_like(self.b)
        mid = np.empty((1, 2, self.n_fields), np.complex128)  # [k, (c_k, c_-k), field]
        self._products(recursion.current, self._stage_one_inputs(0), 0, 0, 1, mid)
        for ell in range(ell_max + 1):
            stage_two = self._stage_two_inputs(mid, ell)
            result = np.empty((ell + 1, 2, self.n_fields), np.complex128)
            more = ell < ell_max
            if more:
                recursion.begin_step()
                stage_one = self._stage_one_inputs(ell + 1)
                mid = np.empty((ell + 2, 2, self.n_fields), np.complex128)
            rows = ell + 2 if more else ell + 1
            block = max(16, _BLOCK_BYTES // (8 * (rows + 1)) // 2 * 2)
            for start in range(0, rows, block):
                stop = min(start + block, rows)
                # Stage 2 of degree ell on S^ell, then S^(ell+1) and its stage 1.
                self._products(
                    recursion.current, stage_two, ell, start, stop, result, signed=True
                )
                if more:
                    recursion.step_rows(start, stop)
                    self._products(
                        recursion.upcoming, stage_one, ell + 1, start, stop, mid
                    )
            out[:, ell, ell_max : ell_max + ell + 1] = result[:, 0].T  # m >= 0
            out[:, ell, ell_max - ell : ell_max] = result[:0:-1, 1].T  # m < 0
            if more:
                recursion.end_step()
        return out

    def _columns(self, pairs):
        """Per parity: (n, 2, field) complex -> scaled (n, 4 field) float64 columns."""
        n = pairs[0].shape[0]
        scale = self.scale[:n, None, None]
        return [
            np.ascontiguousarray(p * scale).view(np.float64).reshape(n, -1)
            for p in pairs
        ]

    def _stage_one_inputs(self, ell: int):
        """Columns [b + s bn, t (b + s bn)] for s = +1, -1."""
        ell_max = self.ell_max
        positive = self.b[:, ell, ell_max : ell_max + ell + 1].T  # [n, field]
        negative = self.b[:, ell, ell_max - ell : ell_max + 1][:, ::-1].T.copy()
        negative[0] = 0.0
        t = _parity_signs(ell)[:, None]
        pairs = []
        for s in (1.0, -1.0):
            x = positive + s * negative
            pairs.append(np.stack([x, t * x], axis=1))
        return self._columns(pairs)

    def _stage_two_inputs(self, mid, ell: int):
        """Columns [t v, v] for s = +1, -1, from stage 1's [c_k, c_-k] of degree ell."""
        phase = self.beta_phase[: ell + 1]
        plus = mid[:, 0] * phase  # e^{-i k beta} c_k
        minus = mid[:, 1] * np.conj(phase)  # e^{+i k beta} c_-k
        minus[0] = 0.0
        t = _parity_signs(ell)[:, None]
        pairs = []
        for s in (1.0, -1.0):
            v = plus + s * minus
            pairs.append(np.stack([t * v, v], axis=1))
        return self._columns(pairs)

    def _products(self, matrix, columns, ell, start, stop, target, signed=False):
        """target[k] = scale_k (matrix[k] @ columns[parity]) for k in [start, stop).

        Rows k with t_k = +1 use columns[0], the others columns[1]; `signed` (stage 2)
        multiplies by t_k too.
        """
        stop = min(stop, ell + 1)
        for index, sign in ((0, 1.0), (1, -1.0)):
            first = start + (ell + index - start) % 2  # rows k with t_k = sign
            rows = slice(first, stop, 2)
            if first >= stop:
                continue
            product = matrix[rows, : ell + 1] @ columns[index]  # [rows, 4 field]
            product = product.view(np.complex128).reshape(-1, 2, self.n_fields)
            factor = self.scale[rows] * sign if signed else self.scale[rows]
            target[rows] = product * factor[:, None, None]


def _parity_signs(ell: int) -> np.ndarray:
    """t_j = (-1)^(ell + j) for j = 0 .. ell."""
    return np.where((ell + np.arange(ell + 1)) % 2 == 1, -1.0, 1.0)


def rotate_field(x, grid: Grid, rotation, spin: int = 0):
    """Rotate a band-limited field sampled on `grid`: returns (R f)(x) = f(R^-1 x).

    The field is analysed at `grid.max_bandlimit`, its coefficients rotated and
    synthesised back on the same grid, so the result is exact for fields band-limited at
    that degree (for others it is the rotation of their band-limited projection).
    Cost: one `sht`, one `isht` and `rotate_coefficients`; at L = 1023 (2048 x 2048)
    the transform tables dominate memory (``benchmarks/rotation.py``).

    Args:
        x: array, shape (..., n_lat, n_lon); real spin-0 input gives real output.
        grid: the `Grid` of `x`.
        rotation: (alpha, beta, gamma) ZYZ Euler angles in radians, or a
            ``scipy.spatial.transform.Rotation``.
        spin: spin weight of the field.

    Returns:
        array of the same shape as `x`.
    """
    alpha, beta, gamma = _euler_angles(rotation)
    x = jnp.asarray(x)
    is_real = spin == 0 and not jnp.issubdtype(x.dtype, jnp.complexfloating)
    coeffs = rotate_coefficients(sht(x, grid, spin), alpha, beta, gamma)
    return isht(coeffs, grid, spin, is_real=is_real)
