"""Simulated CMB temperature maps: Gaussian versus local-type non-Gaussian.

A reconstruction of the data of McEwen, Wallis and Mavor-Parker (ICLR 2022) as
specified in ``models.md`` section 3.3 and ``data.md`` section 3. Everything is
generated here; nothing is downloaded.

* Spectrum: lensed TT C_ell of Planck 2018 LCDM, computed with CAMB by
  ``tools/cmb_spectrum.py`` and stored with the package (`power_spectrum`).
* Gaussian class: a_ell,0 ~ N(0, C_ell), Re and Im of a_ell,m>0 ~ N(0, C_ell / 2),
  a_ell,-m = (-1)^m conj(a_ell,m), synthesised on the model grid n = 2 (L + 1).
* Non-Gaussian class: an independent Gaussian field g of unit variance (spectrum
  C_ell / sigma^2) is squared, h = g + alpha (g^2 - 1), and projected back onto
  2 <= ell <= L. The square is evaluated on a grid of 3 (L + 1) x 3 (L + 1) points,
  where the projection of g^2 (bandlimit 2L) onto degrees <= L is exact (no
  aliasing; ``tests/data/test_cmb.py`` checks this against a 4x finer grid).
* Matched spectra: for a Gaussian g the cross term <g (g^2 - 1)> vanishes, so
  E C_ell^h = C_ell^g + alpha^2 C_ell^q exactly, where q = g^2 - 1 has the
  correlation function 2 xi(cos theta)^2 (Wick) and C_ell^q follows by Gauss-Legendre
  quadrature (`quadratic_spectrum`). Every non-Gaussian map is then filtered by
  sigma sqrt(C_ell^g / C_ell^h), so both classes have exactly the expected spectrum
  C_ell and a classifier must use higher-order statistics.

Maps are in uK. Each map has its own seed: a `numpy.random.SeedSequence` with entropy
`seed` and spawn key (split, index), so any map of any split regenerates alone and
shards can run in parallel. Labels alternate: even indices are Gaussian (label 0),
odd ones non-Gaussian (label 1).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import os
import pathlib
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence

import numpy as np

from keras_sphere import _resumable
from keras_sphere._checks import check_finite
from keras_sphere.sphere.grid import Grid

__all__ = [
    "CMBSimulator",
    "SPLITS",
    "from_healpix",
    "from_healpix_alm",
    "empirical_spectrum",
    "generate",
    "map_skewness",
    "power_spectrum",
    "quadratic_spectrum",
    "to_healpix_alm",
]

SPLITS = {"train": 0, "validation": 1, "test": 2}
T_CMB_UK = 2.7255e6
_SPECTRUM_FILE = "cmb_planck2018_tt.npz"
_FORMAT_VERSION = 1
_RECORD = "record.json"


@functools.lru_cache(maxsize=1)
def _stored_spectrum() -> np.ndarray:
    with (
        importlib.resources.as_file(
            importlib.resources.files("keras_sphere.data") / _SPECTRUM_FILE
        ) as path,
        np.load(path) as stored,
    ):
        return np.array(stored["cl"], dtype=np.float64)


def power_spectrum(ell_max: int) -> np.ndarray:
    """The stored Planck 2018 lensed TT spectrum.

    Args:
        ell_max: inclusive maximum degree (<= 3000).

    Returns:
        float64 C_ell in uK^2, shape (ell_max + 1,), with C_0 = C_1 = 0.
    """
    cl = _stored_spectrum()
    if not 1 <= ell_max < cl.size:
        raise ValueError(
            f"The stored CMB spectrum covers 1 <= ell_max <= {cl.size - 1}. Received: "
            f"ell_max={ell_max}. Regenerate it to a larger degree with "
            "tools/cmb_spectrum.py."
        )
    return cl[: ell_max + 1].copy()


def _variance(cl: np.ndarray) -> float:
    ell = np.arange(cl.size)
    return float(np.sum((2 * ell + 1) * cl) / (4 * np.pi))


def quadratic_spectrum(cl: np.ndarray) -> np.ndarray:
    """Exact spectrum of q = g^2 - <g^2> for a Gaussian field g with spectrum `cl`.

    q has the correlation function 2 xi(mu)^2 with xi(mu) = sum_ell (2 ell + 1) / (4 pi)
    C_ell P_ell(mu), so C_ell^q = 2 pi int 2 xi(mu)^2 P_ell(mu) d mu, a polynomial of
    degree 3 L in mu that Gauss-Legendre quadrature with ceil((3 L + 2) / 2) nodes
    integrates exactly.

    Args:
        cl: C_ell of g for ell = 0 ... L (any units u; the result is in u^2).

    Returns:
        float64 C_ell^q, shape (L + 1,): the spectrum of the projection of q onto
        degrees <= L (q itself reaches degree 2 L).
    """
    cl = np.asarray(cl, dtype=np.float64)
    ell_max = cl.size - 1
    nodes, weights = np.polynomial.legendre.leggauss((3 * ell_max + 2) // 2 + 1)
    ell = np.arange(ell_max + 1)
    xi = np.polynomial.legendre.legval(nodes, (2 * ell + 1) * cl / (4 * np.pi))
    integrand = weights * 2.0 * xi**2
    result = np.empty(ell_max + 1)
    previous, current = np.ones_like(nodes), nodes.copy()
    result[0] = integrand @ previous
    for degree in range(1, ell_max + 1):
        result[degree] = integrand @ current
        previous, current = (
            current,
            ((2 * degree + 1) * nodes * current - degree * previous) / (degree + 1),
        )
    return 2.0 * np.pi * result


def _gaussian_coefficients(cl: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coefficients of a real Gaussian field with spectrum `cl`, padded layout."""
    ell_max = cl.size - 1
    ell = np.arange(ell_max + 1)[:, None]
    order = np.arange(ell_max + 1)[None, :]
    std = np.sqrt(cl)[:, None] * (order <= ell)
    half = rng.standard_normal((2, ell_max + 1, ell_max + 1))
    positive = std * np.sqrt(0.5) * (half[0] + 1j * half[1])
    positive[:, 0] = std[:, 0] * half[0, :, 0]
    coeffs = np.zeros((ell_max + 1, 2 * ell_max + 1), np.complex128)
    coeffs[:, ell_max:] = positive
    sign = (-1.0) ** order[:, 1:]
    coeffs[:, :ell_max] = (sign * np.conj(positive[:, 1:]))[:, ::-1]
    return coeffs


class CMBSimulator:
    """Gaussian and non-Gaussian CMB maps on the model grid of bandlimit `ell_max`.

    Args:
        ell_max: bandlimit L; maps are 2 (L + 1) x 2 (L + 1) (L = 1023: 2048 x 2048).
        alpha: amplitude of the quadratic term for unit-variance g. In the
            Sachs-Wolfe picture alpha = -3 f_NL sigma_T / T_CMB (`f_nl`).
        seed: entropy of every map's `SeedSequence`.

    Example:
        >>> simulator = CMBSimulator(ell_max=31, alpha=0.05)
        >>> maps, labels = simulator.maps("train", [0, 1])
        >>> maps.shape, labels.tolist()
        ((2, 64, 64), [0, 1])
    """

    def __init__(self, ell_max: int = 1023, alpha: float = 0.01, seed: int = 2022):
        if int(ell_max) < 2:
            raise ValueError(f"ell_max must be >= 2. Received: ell_max={ell_max}")
        if not np.isfinite(alpha):
            raise ValueError(f"alpha must be finite. Received: alpha={alpha}")
        self.ell_max = int(ell_max)
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.grid = Grid.for_bandlimit(self.ell_max)
        self.fine_grid = Grid(3 * (self.ell_max + 1), 3 * (self.ell_max + 1))
        self.cl = power_spectrum(self.ell_max)
        self.sigma = np.sqrt(_variance(self.cl))
        unit = self.cl / self.sigma**2
        cl_h = unit + self.alpha**2 * quadratic_spectrum(unit)
        ratio = np.divide(unit, cl_h, out=np.zeros_like(unit), where=cl_h > 0)
        # Filter that gives the non-Gaussian class the spectrum C_ell in uK^2.
        self.matching_filter = self.sigma * np.sqrt(ratio)

    @property
    def f_nl(self) -> float:
        """The Sachs-Wolfe f_NL equivalent to `alpha`: -alpha T_CMB / (3 sigma_T)."""
        return -self.alpha * T_CMB_UK / (3.0 * self.sigma)

    def config(self) -> dict:
        """The settings that determine every map."""
        return {"ell_max": self.ell_max, "alpha": self.alpha, "seed": self.seed}

    @staticmethod
    def label(index: int) -> int:
        """Class of map `index` in any split: 0 Gaussian (even), 1 non-Gaussian."""
        return int(index) % 2

    def rng(self, split: str, index: int) -> np.random.Generator:
        """The generator of map `index` of `split`."""
        if split not in SPLITS:
            raise ValueError(
                f"split must be one of {list(SPLITS)}. Received: {split!r}"
            )
        if not isinstance(index, int | np.integer) or index < 0:
            raise ValueError(f"index must be an integer >= 0. Received: {index!r}")
        sequence = np.random.SeedSequence(self.seed, spawn_key=(SPLITS[split], index))
        return np.random.default_rng(sequence)

    def coefficients(
        self, split: str, indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Harmonic coefficients of maps of a split.

        Returns:
            (coefficients complex128 (B, L + 1, 2 L + 1) in uK, padded layout of a
            real field; labels int32 (B,)).
        """
        from keras_sphere.sphere.sht import isht
        from keras_sphere.sphere.sht import sht

        labels = np.array([self.label(i) for i in indices], np.int32)
        draws = [_gaussian_coefficients(self.cl, self.rng(split, i)) for i in indices]
        shape = (0, self.ell_max + 1, 2 * self.ell_max + 1)
        coeffs = np.stack(draws) if draws else np.zeros(shape, np.complex128)
        odd = np.flatnonzero(labels == 1)
        if odd.size:
            unit = coeffs[odd] / self.sigma
            g = np.asarray(
                isht(unit.astype(np.complex64), self.fine_grid, is_real=True)
            )
            q = g + np.float32(self.alpha) * (g * g - np.float32(1.0))
            projected = np.asarray(sht(q, self.fine_grid, lmax=self.ell_max))
            coeffs[odd] = projected * self.matching_filter[:, None]
        return coeffs, labels

    def maps(self, split: str, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Maps of a split on `grid`.

        Returns:
            (maps float32 (B, n, n) in uK, labels int32 (B,)).
        """
        coeffs, labels = self.coefficients(split, indices)
        return self.synthesise(coeffs), labels

    def synthesise(self, coeffs: np.ndarray) -> np.ndarray:
        """Maps (B, n, n) float32 from coefficients (B, L + 1, 2 L + 1).

        Raises:
            ValueError: if coefficients of some maps are NaN or infinite (the
                message lists those maps).
        """
        from keras_sphere.sphere.sht import isht

        check_finite(coeffs, "coeffs")
        return np.asarray(
            isht(np.asarray(coeffs, np.complex64), self.grid, is_real=True)
        )


def _resumed_specs(cache_dir, simulator, split, n_maps, outputs) -> dict | None:
    """Output specs of a started cache for the same request, else None."""
    if cache_dir is None or not (pathlib.Path(cache_dir) / _RECORD).exists():
        return None
    stored = read_record(cache_dir)
    names = {*outputs, "labels"}
    if (
        stored.get("format") != _FORMAT_VERSION
        or stored.get("simulator") != simulator.config()
        or stored.get("split") != split
        or set(stored.get("outputs", {})) != names
        or stored.get("done", 0) < 1
        or any(shape[0] != n_maps for shape, _ in stored["outputs"].values())
    ):
        return None  # open_arrays then explains any mismatch
    return {
        name: (tuple(shape), dtype)
        for name, (shape, dtype) in stored["outputs"].items()
    }


def empirical_spectrum(coeffs: np.ndarray) -> np.ndarray:
    """Per-map power spectrum C^_ell = sum_m |a_ell,m|^2 / (2 ell + 1).

    Args:
        coeffs: (..., L + 1, 2 L + 1) padded coefficients.

    Returns:
        float64 (..., L + 1).

    Raises:
        ValueError: if some maps' coefficients are NaN or infinite (listed).
    """
    check_finite(coeffs, "coeffs", axis=0 if np.ndim(coeffs) > 2 else None)
    ell_max = np.shape(coeffs)[-2] - 1
    power = np.sum(np.abs(np.asarray(coeffs)) ** 2, axis=-1)
    return power / (2 * np.arange(ell_max + 1) + 1)


def map_skewness(maps: np.ndarray, grid: Grid) -> np.ndarray:
    """Area-weighted pixel skewness of each map.

    Args:
        maps: (B, n_lat, n_lon) real maps on `grid`.
        grid: their `Grid`.

    Returns:
        float64 (B,): E[(T - mean)^3] / E[(T - mean)^2]^(3/2), expectations over the
        sphere with the grid's quadrature weights.

    Raises:
        ValueError: if some maps hold NaN or infinite values (listed).
    """
    maps = np.asarray(maps, np.float64)
    grid.check_field_shape(maps.shape, "maps")
    check_finite(maps, "maps")
    weights = np.broadcast_to(grid.weights[:, None], grid.shape) / (4 * np.pi)
    mean = np.einsum("bij,ij->b", maps, weights)
    centred = maps - mean[:, None, None]
    variance = np.einsum("bij,ij->b", centred**2, weights)
    third = np.einsum("bij,ij->b", centred**3, weights)
    return third / variance**1.5


Output = Callable[[np.ndarray, np.ndarray], np.ndarray]


def generate(
    simulator: CMBSimulator,
    split: str,
    n_maps: int,
    outputs: Mapping[str, Output] | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 4,
    verbose: int = 1,
) -> dict[str, np.ndarray]:
    """Generate a split batch by batch, with a progress bar and a resumable cache.

    Full-resolution maps are large (16.8 MB each at L = 1023), so instead of storing
    them, `outputs` reduces each batch to what is kept: each entry maps
    (maps (B, n, n) float32 uK, coefficients (B, L + 1, 2 L + 1) complex128) to an
    array (B, ...). Given `cache_dir`, every finished batch is written to
    ``<cache_dir>/<name>.npy`` and recorded, so calling again resumes.

    Args:
        simulator: the `CMBSimulator`.
        split: "train", "validation" or "test".
        n_maps: maps 0 ... n_maps - 1 of the split.
        outputs: name -> function; default {"maps": the maps themselves}.
        cache_dir: optional directory of the cache; it records the simulator's
            settings and the output names, shapes and dtypes, and refuses to mix.
        batch_size: maps per batch.
        verbose: 1 shows a progress bar.

    Returns:
        name -> array (memory maps when cached), plus "labels" int32 (n_maps,).
    """
    from keras.utils import Progbar

    outputs = dict(outputs or {"maps": lambda maps, coeffs: maps})
    if "labels" in outputs:
        raise ValueError("'labels' is always produced; name the output differently.")
    if int(n_maps) < 1:
        raise ValueError(f"n_maps must be >= 1. Received: n_maps={n_maps}")
    indices = np.arange(int(n_maps))
    firsts = None
    specs = _resumed_specs(cache_dir, simulator, split, int(n_maps), outputs)
    if specs is None:
        # The output shapes are those of the first batch, which is kept.
        first = indices[: min(batch_size, n_maps)]
        coeffs, labels = simulator.coefficients(split, first)
        maps = simulator.synthesise(coeffs)
        firsts = {name: np.asarray(fn(maps, coeffs)) for name, fn in outputs.items()}
        firsts["labels"] = labels
        specs = {
            name: ((int(n_maps), *value.shape[1:]), value.dtype.str)
            for name, value in firsts.items()
        }
    record = {
        "format": _FORMAT_VERSION,
        "simulator": simulator.config(),
        "split": split,
        "outputs": {
            name: [list(shape), dtype] for name, (shape, dtype) in specs.items()
        },
    }
    if cache_dir is None:
        store, done = {n: np.empty(s, d) for n, (s, d) in specs.items()}, 0
    else:
        paths = {name: pathlib.Path(cache_dir) / f"{name}.npy" for name in specs}
        record_path = pathlib.Path(cache_dir) / _RECORD
        store, done = _resumable.open_arrays(paths, record_path, record, specs)
    progress = Progbar(int(n_maps), verbose=verbose, unit_name="map")
    progress.update(done)
    for start in range(done, int(n_maps), batch_size):
        batch = indices[start : start + batch_size]
        if start == 0 and firsts is not None:
            values = firsts
        else:
            coeffs, labels = simulator.coefficients(split, batch)
            maps = simulator.synthesise(coeffs)
            values = {name: fn(maps, coeffs) for name, fn in outputs.items()}
            values["labels"] = labels
        for name, value in values.items():
            store[name][start : start + len(batch)] = value
        if cache_dir is not None:
            _resumable.mark_done(record_path, store, start + len(batch))
        progress.update(start + len(batch))
    if cache_dir is not None:
        del store
        return _resumable.load_arrays(paths)
    return store


def from_healpix(healpix_map: np.ndarray, ell_max: int, iterations: int = 3):
    """A HEALPix map resampled exactly onto our model grid through its harmonics.

    The map is analysed with healpy (`map2alm` with `iterations` Jacobi iterations,
    approximate as all HEALPix analysis is), cut to degrees <= `ell_max`, and
    synthesised on `Grid.for_bandlimit(ell_max)`, so no interpolation is involved.
    healpy's spin-0 harmonics share our convention (Condon-Shortley phase, orthonormal).

    Args:
        healpix_map: (12 nside^2,) RING-ordered map (e.g. uK), or (C, 12 nside^2).
        ell_max: bandlimit L of the result; at most 3 nside - 1.
        iterations: healpy's `iter` argument.

    Returns:
        float32 map(s) (n, n) or (C, n, n) with n = 2 (L + 1).

    Raises:
        ImportError: without healpy (``pip install "keras-sphere[cmb]"``).
        ValueError: for a map that is not HEALPix, NaN/UNSEEN pixels, or an
            ell_max the map cannot support.
    """
    try:
        import healpy
    except ImportError as error:
        raise ImportError(
            "from_healpix needs healpy: pip install 'keras-sphere[cmb]'"
        ) from error
    from keras_sphere.sphere.sht import isht

    values = np.asarray(healpix_map, dtype=np.float64)
    single = values.ndim == 1
    values = np.atleast_2d(values)
    if values.ndim != 2 or not healpy.isnpixok(values.shape[-1]):
        raise ValueError(
            "healpix_map must have shape (12 nside^2,) or (C, 12 nside^2). Received "
            f"shape {np.shape(healpix_map)}."
        )
    # UNSEEN marks masked pixels: as unusable as NaN.
    values = np.where(values == healpy.UNSEEN, np.nan, values)
    check_finite(
        values[0] if single else values,
        "healpix_map",
        axis=None if single else 0,
        hint="NaN, infinite and UNSEEN pixels cannot be analysed: inpaint or fill "
        "the masked region first, a full-sky map is needed.",
    )
    nside = healpy.npix2nside(values.shape[-1])
    if not 0 <= ell_max <= 3 * nside - 1:
        raise ValueError(
            f"ell_max must be <= 3 nside - 1 = {3 * nside - 1} for nside {nside}. "
            f"Received: ell_max={ell_max}."
        )
    grid = Grid.for_bandlimit(ell_max)
    coeffs = np.stack(
        [
            from_healpix_alm(healpy.map2alm(channel, lmax=ell_max, iter=iterations))
            for channel in values
        ]
    )
    maps = np.asarray(isht(coeffs.astype(np.complex64), grid, is_real=True))
    return maps[0] if single else maps


def from_healpix_alm(alm: np.ndarray) -> np.ndarray:
    """Healpy's m >= 0 alm array (lmax = mmax = L) -> our padded layout of a real field.

    Both use orthonormal harmonics with the Condon-Shortley phase; a_ell,-m is filled
    by reality, a_ell,-m = (-1)^m conj(a_ell,m).

    Returns:
        complex128 (L + 1, 2 L + 1).

    Raises:
        ValueError: if `alm` is not healpy's layout or holds NaN or infinity.
    """
    alm = np.asarray(alm)
    check_finite(alm, "alm", axis=None)
    ell_max = int(round((np.sqrt(8 * alm.size + 1) - 3) / 2))
    if (ell_max + 1) * (ell_max + 2) // 2 != alm.size:
        raise ValueError(
            f"alm of size {alm.size} is not a healpy array with lmax = mmax."
        )
    ell = np.concatenate([np.arange(m, ell_max + 1) for m in range(ell_max + 1)])
    order = np.concatenate([np.full(ell_max + 1 - m, m) for m in range(ell_max + 1)])
    coeffs = np.zeros((ell_max + 1, 2 * ell_max + 1), np.complex128)
    coeffs[ell, ell_max + order] = alm
    negative = order > 0
    coeffs[ell[negative], ell_max - order[negative]] = (
        (-1.0) ** order[negative]
    ) * np.conj(alm[negative])
    return coeffs


def to_healpix_alm(coeffs: np.ndarray) -> np.ndarray:
    """Our padded coefficients of a real field -> healpy's m >= 0 alm array.

    The inverse of `from_healpix_alm` (the m < 0 half is implied by reality).
    """
    coeffs = np.asarray(coeffs)
    ell_max = coeffs.shape[-2] - 1
    return np.concatenate([coeffs[m:, ell_max + m] for m in range(ell_max + 1)]).astype(
        np.complex128
    )


def read_record(cache_dir: str | os.PathLike) -> dict:
    """The settings and progress recorded in a `generate` cache."""
    return json.loads((pathlib.Path(cache_dir) / _RECORD).read_text())
