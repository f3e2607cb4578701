"""Exact spectral resampling between grids, in float64 NumPy on the host.

`regrid` moves a field from one grid to another through its spherical harmonic
coefficients: analysis on the source grid at L = ``source.max_bandlimit`` (or a smaller
``lmax`` asked for explicitly), synthesis on the target. For a field band-limited at
that L the result is the field itself at the target's points, to rounding error; a
field with power above L loses exactly its ell > L part. A target too coarse to hold
L is refused with an error rather than truncated silently. This is a data step (WB2
and dinosaur grids onto the model grid, ``data.md`` section 2), not a layer: it runs
once per data set, in float64, and never inside a model.

Grids:

* ``grid.Grid``: equiangular with both poles, L_max = min(n_lat - 2, (n_lon - 1) // 2)
  (``grid.py``);
* `GaussianGrid` (``gaussian_grid.py``): Gauss-Legendre rows,
  L_max = min(n_lat - 1, (n_lon - 1) // 2);
* `HealpixGrid`: HEALPix in RING ordering through healpy (optional), approximate
  analysis (below).

Spins: 0 (real or complex scalars) and +1 / -1 (winds): with u eastward and v
northward, u + i v is a spin +1 field and u - i v a spin -1 field (``sphere-maths.md``
section 3.3); the harmonics and the coefficient layout (..., L + 1, 2L + 1), a_ell,m at
[ell, L + m], are those of ``wigner.py`` and ``sht.py``.

Engine (`analyse`, `synthesise` on `Grid` and `GaussianGrid`): a longitude FFT, then
per order m one real matmul with the latitude table sY_ell,m(theta_j, 0) of
``wigner.spin_harmonics``, times the row weights for analysis (Gauss-Legendre weights;
Clenshaw-Curtis on `Grid` where plain quadrature is exact, else the exact folded
table of ``sht_tables.py`` that reaches L = n_lat - 2). It is the transform of
``sht.py`` in float64 NumPy (``sht`` runs in float64 only with JAX's x64 mode on,
which a library must not switch). Tables are built per call, 16 orders at a time:
float64 scratch of 16 (L + 1) n_lat values (4 MiB at L = 127 on 256 x 256), never the
whole (L + 1)(2L + 1) n_lat table; pass all time steps and levels in one call.

HEALPix (`HealpixGrid`, analysis and synthesis through healpy) is in
``healpix_grid.py``.
"""

from __future__ import annotations

import numpy as np

from keras_sphere._checks import check_finite
from keras_sphere.sphere.gaussian_grid import GaussianGrid
from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.healpix_grid import HealpixGrid
from keras_sphere.sphere.healpix_grid import healpix_analyse
from keras_sphere.sphere.healpix_grid import healpix_synthesise
from keras_sphere.sphere.sht_tables import _harmonic_rows
from keras_sphere.sphere.wigner import spin_harmonics

__all__ = ["HealpixGrid", "analyse", "regrid", "synthesise"]

# The spins regrid supports: scalars and u +- i v winds.
SUPPORTED_SPINS = (-1, 0, 1)
# Orders per latitude table, to bound float64 scratch memory.
_M_CHUNK = 16


AnyGrid = Grid | GaussianGrid | HealpixGrid


def regrid(
    x, source: AnyGrid, target: AnyGrid, spin: int = 0, *, lmax: int | None = None
) -> np.ndarray:
    """Resample a field from `source` to `target` through its harmonic coefficients.

    Analysis on `source` at L = `lmax` (default ``source.max_bandlimit``), synthesis
    on `target`. Exact (to float64 rounding) for fields band-limited at L on `Grid`
    and `GaussianGrid` sources; see `HealpixGrid` for its accuracy.

    Args:
        x: array of shape (..., n_lat, n_lon) on a `Grid` or `GaussianGrid` (row 0
            northmost, column 0 at 0 degrees east), or (..., npix) on a `HealpixGrid`.
            Spin 0: real (or complex) values in any units. Spin +1: complex u + i v
            (u eastward, v northward); spin -1: complex u - i v.
        source: the grid `x` is sampled on.
        target: the grid to resample onto.
        spin: 0, +1 or -1.
        lmax: inclusive maximum degree L kept; at most ``source.max_bandlimit`` and
            ``target.max_bandlimit``. Pass it to truncate explicitly when the target
            is coarser than the source.

    Returns:
        float64 for real spin-0 input, else complex128; shape (..., *target.shape).

    Raises:
        ValueError: if the trailing axes of `x` are not ``source.shape``, `x` holds
            NaN or inf, `spin` is not supported, `lmax` exceeds the source's
            bandlimit, or L exceeds the target's bandlimit.
        TypeError: if a grid is of an unknown kind or `x` is real with spin +-1.
    """
    field = _field(x, source, spin, "field passed to regrid", "source")
    _check_grid(target, "target")
    if lmax is None:
        ell_max = source.max_bandlimit
        if ell_max > target.max_bandlimit:
            raise ValueError(
                f"The source {source} holds degrees up to {ell_max}, but the target "
                f"{target} only up to {target.max_bandlimit}: regridding would drop "
                f"degrees {target.max_bandlimit + 1}..{ell_max}, and this function "
                f"never truncates silently. Pass lmax=<= {target.max_bandlimit} "
                f"(e.g. lmax={target.max_bandlimit}) to truncate explicitly, or "
                f"choose a finer target ({_finer_grid_hint(target, ell_max)})."
            )
    else:
        ell_max = _check_lmax(lmax, source, spin, "source")
        if ell_max > target.max_bandlimit:
            raise ValueError(
                f"lmax={ell_max} is above the bandlimit {target.max_bandlimit} of "
                f"the target {target}. Pass lmax=<= {target.max_bandlimit} to "
                f"truncate further, or choose a finer target "
                f"({_finer_grid_hint(target, ell_max)})."
            )
    coeffs = _analyse(field, source, spin, ell_max)
    return _synthesise(coeffs, target, spin, is_real=np.isrealobj(field))


def analyse(x, grid: AnyGrid, spin: int = 0, lmax: int | None = None) -> np.ndarray:
    """Spin-weighted harmonic coefficients of a field sampled on `grid`, in float64.

    On `Grid` this equals ``sht(x, grid, spin, lmax)`` computed in float64; on
    `GaussianGrid` it is Gauss-Legendre quadrature, exact for fields band-limited at
    ``grid.max_bandlimit``; on `HealpixGrid` it is iterative (see there).

    Args:
        x: real or complex array, shape (..., *grid.shape); a spin-`spin` field (real
            input is allowed for spin 0 only).
        grid: the grid `x` is sampled on.
        spin: 0, +1 or -1.
        lmax: inclusive maximum degree L; default and maximum ``grid.max_bandlimit``.
            A smaller value truncates (the result equals slicing the full one).

    Returns:
        complex128, shape (..., L + 1, 2L + 1); a_ell,m at [..., ell, L + m], zero
        where |m| > ell or ell < |spin|.

    Raises:
        ValueError: if the trailing axes are not ``grid.shape``, `x` holds NaN or
            inf, `spin` is not supported, or `lmax` is negative, below |spin| or above
            ``grid.max_bandlimit``.
        TypeError: if `grid` is of an unknown kind or `x` is real with spin +-1.
    """
    field = _field(x, grid, spin, "field passed to analyse", "grid")
    ell_max = grid.max_bandlimit if lmax is None else lmax
    ell_max = _check_lmax(ell_max, grid, spin, "grid")
    return _analyse(field, grid, spin, ell_max)


def synthesise(
    coeffs, grid: AnyGrid, spin: int = 0, *, is_real: bool = False
) -> np.ndarray:
    """A field on `grid` from its spin-weighted harmonic coefficients, in float64.

    Exact evaluation at the grid points (the inverse of `analyse`; on `Grid` equal to
    ``isht`` in float64).

    Args:
        coeffs: complex array, shape (..., L + 1, 2L + 1) in the padded layout of
            `analyse`; entries at |m| > ell or ell < |spin| are ignored.
        grid: the grid to synthesise on; L must be <= ``grid.max_bandlimit``.
        spin: 0, +1 or -1.
        is_real: return the real part (spin 0 only): for coefficients of a real field,
            a_ell,-m = (-1)^m conj(a_ell,m), the imaginary part is rounding error.

    Returns:
        complex128 (float64 if `is_real`), shape (..., *grid.shape).

    Raises:
        ValueError: if `coeffs` is not in the padded layout or holds NaN or inf, L
            exceeds ``grid.max_bandlimit``, or `spin` is not supported or (with
            `is_real`) not 0.
    """
    _check_spin(spin)
    _check_grid(grid, "grid")
    a = np.asarray(coeffs)
    if a.ndim < 2 or a.shape[-1] != 2 * a.shape[-2] - 1:
        raise ValueError(
            "Coefficients must end with the padded axes (L + 1, 2L + 1). "
            f"Received shape {a.shape}."
        )
    if is_real and spin != 0:
        raise ValueError(
            f"is_real=True is for spin-0 fields only; spin +-1 fields are complex. "
            f"Received: spin={spin}."
        )
    ell_max = a.shape[-2] - 1
    if ell_max > grid.max_bandlimit:
        raise ValueError(
            f"Coefficients up to L = {ell_max} are above the bandlimit "
            f"{grid.max_bandlimit} of the grid {grid}, which could not analyse the "
            f"field back. Truncate them first (truncate(coeffs, "
            f"{grid.max_bandlimit})) or use {_finer_grid_hint(grid, ell_max)}."
        )
    _check_lmax(ell_max, grid, spin, "grid")
    _check_values(a, "coefficient array passed to synthesise", 2)
    return _synthesise(a.astype(np.complex128), grid, spin, is_real=is_real)


# ---------------------------------------------------------------------------------
# Checks


def _check_spin(spin) -> None:
    if isinstance(spin, bool) or not isinstance(spin, int | np.integer):
        raise TypeError(f"spin must be an int. Received: spin={spin!r}")
    if spin not in SUPPORTED_SPINS:
        raise ValueError(
            "Regridding supports spin 0 (scalars) and spin +1 / -1 (winds as u + i v "
            f"/ u - i v) only. Received: spin={spin}."
        )


def _check_grid(grid, name: str) -> None:
    if not isinstance(grid, Grid | GaussianGrid | HealpixGrid):
        raise TypeError(
            f"{name} must be a Grid, GaussianGrid or HealpixGrid. Received: "
            f"{name}={grid!r}"
        )


def _check_lmax(lmax, grid: AnyGrid, spin: int, name: str) -> int:
    if isinstance(lmax, bool) or not isinstance(lmax, int | np.integer):
        raise TypeError(f"lmax must be an int or None. Received: lmax={lmax!r}")
    lmax = int(lmax)
    if lmax < 0:
        raise ValueError(f"lmax must be >= 0. Received: lmax={lmax}")
    if lmax < abs(spin):
        raise ValueError(
            f"lmax must be >= |spin| = {abs(spin)} (spin-{spin} fields have no "
            f"degrees below it). Received: lmax={lmax}"
        )
    if lmax > grid.max_bandlimit:
        raise ValueError(
            f"lmax={lmax} is above the bandlimit {grid.max_bandlimit} of the {name} "
            f"{grid}, up to which its analysis is exact. Pass lmax <= "
            f"{grid.max_bandlimit}."
        )
    return lmax


def _check_values(array: np.ndarray, what: str, n_grid_axes: int) -> None:
    """NaN / inf check naming leading-axis indices when there is a leading axis."""
    check_finite(array, what, axis=0 if array.ndim > n_grid_axes else None)


def _field(x, grid: AnyGrid, spin: int, what: str, grid_name: str) -> np.ndarray:
    """`x` as a float64 or complex128 array, checked against `grid` and `spin`."""
    _check_spin(spin)
    _check_grid(grid, grid_name)
    field = np.asarray(x)
    if not np.issubdtype(field.dtype, np.number) or field.dtype.kind in "mM":
        raise TypeError(
            f"The {what} must be a real or complex numeric array. Received dtype "
            f"{field.dtype}."
        )
    if spin != 0 and not np.iscomplexobj(field):
        raise TypeError(
            f"A spin-{spin} field is complex: pass u {'+' if spin > 0 else '-'} 1j * v "
            f"(u eastward, v northward). Received a real {field.dtype} array."
        )
    grid.check_field_shape(field.shape, what)
    _check_values(field, what, len(grid.shape))
    dtype = np.complex128 if np.iscomplexobj(field) else np.float64
    return field.astype(dtype, copy=False)


def _finer_grid_hint(grid: AnyGrid, ell_max: int) -> str:
    if isinstance(grid, Grid):
        return f"a Grid with n_lat >= {ell_max + 2} and n_lon >= {2 * ell_max + 1}"
    if isinstance(grid, GaussianGrid):
        return (
            f"a GaussianGrid with n_lat >= {ell_max + 1} and n_lon >= {2 * ell_max + 1}"
        )
    return f"a HealpixGrid with nside >= {-(-ell_max // 2)}"


# ---------------------------------------------------------------------------------
# Transforms


def _analyse(field: np.ndarray, grid: AnyGrid, spin: int, ell_max: int) -> np.ndarray:
    if isinstance(grid, HealpixGrid):
        return healpix_analyse(field, grid, spin, ell_max)
    return _latitude_analyse(field, grid, spin, ell_max)


def _synthesise(coeffs, grid: AnyGrid, spin: int, is_real: bool) -> np.ndarray:
    if isinstance(grid, HealpixGrid):
        field = healpix_synthesise(coeffs, grid, spin)
    else:
        field = _latitude_synthesise(coeffs, grid, spin)
    return field.real.copy() if is_real else field


def _tables(grid: Grid | GaussianGrid, ell_max: int, spin: int, orders, analysis):
    """Latitude table of some orders, float64, shape (len(orders), ell_max + 1, n_lat).

    Synthesis: sY_ell,m(theta_j, 0). Analysis: the same times the row weights q_j, or
    on a latitude-limited `Grid` the exact folded table of ``sht_tables.py``.
    """
    if analysis and isinstance(grid, Grid) and 2 * ell_max + 1 > grid.n_lat:
        rows = _harmonic_rows(grid.n_lat, ell_max, spin, orders, grid.n_lat, True)
        table = rows * (2 * np.pi / grid.n_lon)
    else:
        # pi * j / (n_lat - 1) rounds to pi + 4e-16 in the last row for some n_lat
        # (14, 27, 48, ...), where wigner_d, which takes the pole values only at
        # exactly pi, returns zeros: clip to the sphere.
        theta = np.minimum(grid.theta, np.pi)
        table = spin_harmonics(ell_max, orders, spin, theta)  # [ell, m, j]
        if analysis:
            table = table * grid.weights
    return table.transpose(1, 0, 2)  # [m, ell, j]


def _latitude_analyse(field, grid: Grid | GaussianGrid, spin: int, ell_max: int):
    batch_shape = field.shape[:-2]
    samples = field.reshape(-1, *grid.shape)
    n_batch = samples.shape[0]
    orders = np.arange(-ell_max, ell_max + 1)
    # F_jm = sum_k f_jk e^{-i m phi_k}
    spectrum = np.fft.fft(samples, axis=-1)[:, :, orders % grid.n_lon]  # [b, j, m]
    spectrum = spectrum.transpose(2, 1, 0)  # [m, j, b]
    parts = np.concatenate([spectrum.real, spectrum.imag], axis=-1)  # [m, j, 2b]
    out = np.empty((orders.size, ell_max + 1, 2 * n_batch))  # [m, ell, 2b]
    for start in range(0, orders.size, _M_CHUNK):
        chunk = slice(start, start + _M_CHUNK)
        table = _tables(grid, ell_max, spin, orders[chunk], analysis=True)
        out[chunk] = table @ parts[chunk]  # [m, ell, j] @ [m, j, 2b]
    coeffs = out[..., :n_batch] + 1j * out[..., n_batch:]  # [m, ell, b]
    coeffs = coeffs.transpose(2, 1, 0)  # [b, ell, m]
    return coeffs.reshape(*batch_shape, ell_max + 1, 2 * ell_max + 1)


def _latitude_synthesise(coeffs, grid: Grid | GaussianGrid, spin: int):
    ell_max = coeffs.shape[-2] - 1
    batch_shape = coeffs.shape[:-2]
    a = coeffs.reshape(-1, ell_max + 1, 2 * ell_max + 1).transpose(2, 1, 0)
    n_batch = a.shape[-1]
    parts = np.concatenate([a.real, a.imag], axis=-1)  # [m, ell, 2b]
    orders = np.arange(-ell_max, ell_max + 1)
    out = np.empty((orders.size, grid.n_lat, 2 * n_batch))  # [m, j, 2b]
    for start in range(0, orders.size, _M_CHUNK):
        chunk = slice(start, start + _M_CHUNK)
        table = _tables(grid, ell_max, spin, orders[chunk], analysis=False)
        out[chunk] = (
            table.transpose(0, 2, 1) @ parts[chunk]
        )  # [m, j, ell] @ [m, ell, 2b]
    columns = out[..., :n_batch] + 1j * out[..., n_batch:]  # [m, j, b]
    # f_jk = sum_m F_jm e^{i m phi_k}; n_lon >= 2L + 1, so the orders do not collide.
    spectrum = np.zeros((n_batch, grid.n_lat, grid.n_lon), np.complex128)
    spectrum[:, :, orders % grid.n_lon] = columns.transpose(2, 1, 0)
    field = np.fft.ifft(spectrum, axis=-1) * grid.n_lon
    return field.reshape(*batch_shape, *grid.shape)
