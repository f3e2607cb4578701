"""Step 1 of the cmb_1024 recipe: simulate the maps and cache what training needs.

Each split is simulated at L = 1023 (2048 x 2048 maps) by `keras_sphere.data.cmb`
and reduced on the fly (maps are never stored) to:

* ``scattering``: scattering features, J0 = 4, depth 2, lam = 2: (32, 32, 29);
* ``lowpass``: the map band-limited to L = 31 on its 64 x 64 grid (baseline a);
* ``spectrum``: the per-map power spectrum C^_ell, ell <= 1023 (baseline b);
* ``skewness``: the area-weighted pixel skewness (baseline c).

The cache (``~/.cache/keras_sphere/cmb_1024`` by default) resumes after an
interruption: rerun the same command.

    python zoo/cmb_1024/data.py [--cache-dir DIR] [--train 1000] [--test 400]
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import keras_sphere  # noqa: F401  (selects the JAX backend)
from keras_sphere.data import cmb
from keras_sphere.layers.scattering_layer import scatter_channels
from keras_sphere.sphere import Grid
from keras_sphere.sphere import isht
from keras_sphere.sphere import truncate
from keras_sphere.sphere.scattering import ScatteringNetwork

ELL_MAX = 1023
ALPHA = 0.008
SEED = 2022
J0 = 4
DEPTH = 2
LOW_BANDLIMIT = 31
DEFAULT_CACHE = pathlib.Path.home() / ".cache/keras_sphere/cmb_1024"
SIZES = {"train": 1000, "validation": 200, "test": 400}


def simulator() -> cmb.CMBSimulator:
    """The simulator of the preset's data."""
    return cmb.CMBSimulator(ELL_MAX, alpha=ALPHA, seed=SEED)


def outputs(sim: cmb.CMBSimulator) -> dict:
    """The per-map reductions kept in the cache."""
    network = ScatteringNetwork(sim.grid, ELL_MAX, J0, DEPTH)
    plans = network.plans("float32")
    low_grid = Grid.for_bandlimit(LOW_BANDLIMIT)

    def scattering(maps, coeffs):
        return np.asarray(scatter_channels(maps[..., None], network, "spatial", plans))

    def lowpass(maps, coeffs):
        low = np.asarray(truncate(coeffs, LOW_BANDLIMIT), np.complex64)
        return np.asarray(isht(low, low_grid, is_real=True))

    def spectrum(maps, coeffs):
        return cmb.empirical_spectrum(coeffs).astype(np.float32)

    def skewness(maps, coeffs):
        return cmb.map_skewness(maps, sim.grid).astype(np.float32)

    return {
        "scattering": scattering,
        "lowpass": lowpass,
        "spectrum": spectrum,
        "skewness": skewness,
    }


def load_split(split: str, cache_dir: pathlib.Path = DEFAULT_CACHE) -> dict:
    """The cached arrays of a finished split (read-only memory maps)."""
    record = cmb.read_record(cache_dir / split)
    n_maps = record["outputs"]["labels"][0][0]
    if record["done"] < n_maps:
        raise RuntimeError(
            f"The {split} split in {cache_dir} is unfinished ({record['done']} of "
            f"{n_maps} maps): rerun python zoo/cmb_1024/data.py to resume it."
        )
    return {
        name: np.load(cache_dir / split / f"{name}.npy", mmap_mode="r")
        for name in record["outputs"]
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=pathlib.Path, default=DEFAULT_CACHE)
    for split, size in SIZES.items():
        parser.add_argument(f"--{split}", type=int, default=size)
    args = parser.parse_args(argv)
    sim = simulator()
    reductions = outputs(sim)
    for split in SIZES:
        print(f"{split}: {getattr(args, split)} maps at L = {ELL_MAX}, alpha = {ALPHA}")
        cmb.generate(
            sim,
            split,
            getattr(args, split),
            reductions,
            cache_dir=args.cache_dir / split,
            batch_size=4,
        )


if __name__ == "__main__":
    main()
