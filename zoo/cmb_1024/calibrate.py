"""Calibrate the non-Gaussian amplitude alpha of the cmb_1024 data.

For each alpha, simulates maps of both classes at L = 1023 and measures how well the
area-weighted pixel skewness separates them at full resolution and after low-passing
to L = 31 (the resolution of the baseline CNN). The preset's alpha is chosen so that
the full-resolution statistic separates the classes well but not trivially while the
low-resolution one stays near chance (``models.md`` section 3.3, item 5).

    python zoo/cmb_1024/calibrate.py --alphas 0.005 0.01 0.02 --maps 40
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import keras_sphere  # noqa: F401  (selects the JAX backend)
from keras_sphere.data.cmb import CMBSimulator
from keras_sphere.data.cmb import map_skewness
from keras_sphere.sphere import Grid
from keras_sphere.sphere import isht
from keras_sphere.sphere import truncate


def lowpass_maps(coeffs: np.ndarray, ell_max: int) -> np.ndarray:
    """Maps band-limited to `ell_max` on their model grid."""
    grid = Grid.for_bandlimit(ell_max)
    low = np.asarray(truncate(coeffs, ell_max), np.complex64)
    return np.asarray(isht(low, grid, is_real=True))


def best_threshold_accuracy(stat: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the best single threshold on a statistic (optimistic in-sample)."""
    order = np.argsort(stat)
    sorted_labels = labels[order]
    below_ng = np.concatenate([[0], np.cumsum(sorted_labels == 1)])
    below_g = np.concatenate([[0], np.cumsum(sorted_labels == 0)])
    n_g, n_ng = below_g[-1], below_ng[-1]
    # NG below threshold and G above, or the reverse.
    correct = np.maximum(below_ng + (n_g - below_g), below_g + (n_ng - below_ng))
    return float(correct.max() / labels.size)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.005, 0.01, 0.02])
    parser.add_argument("--maps", type=int, default=40)
    parser.add_argument("--ell-max", type=int, default=1023)
    parser.add_argument("--low", type=int, default=31)
    args = parser.parse_args(argv)
    results = []
    for alpha in args.alphas:
        simulator = CMBSimulator(args.ell_max, alpha=alpha, seed=7)  # not a preset seed
        full, low, labels = [], [], []
        for start in range(0, args.maps, 4):
            coeffs, label = simulator.coefficients(
                "validation", range(start, start + 4)
            )
            full.append(map_skewness(simulator.synthesise(coeffs), simulator.grid))
            low.append(
                map_skewness(
                    lowpass_maps(coeffs, args.low), Grid.for_bandlimit(args.low)
                )
            )
            labels.append(label)
        full, low, labels = map(np.concatenate, (full, low, labels))
        row = {
            "alpha": alpha,
            "f_nl": simulator.f_nl,
            "skewness_gaussian": [full[labels == 0].mean(), full[labels == 0].std()],
            "skewness_non_gaussian": [
                full[labels == 1].mean(),
                full[labels == 1].std(),
            ],
            "threshold_accuracy_full": best_threshold_accuracy(full, labels),
            "threshold_accuracy_low": best_threshold_accuracy(low, labels),
        }
        results.append(row)
        print(json.dumps(row, default=float))


if __name__ == "__main__":
    main()
