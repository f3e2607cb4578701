"""Classify CMB maps as Gaussian or non-Gaussian with the pretrained cmb_1024 preset.

Simulates a few 2048 x 2048 maps of each class (or reads a HEALPix FITS file), loads
the preset with one call, prints the probabilities, and saves a Mollweide plot of a
map with its prediction.

    python examples/cmb_classify.py                        # 2 simulated maps per class
    python examples/cmb_classify.py --healpix map.fits     # a real or simulated map

Measured on 2 CPU cores shared with other jobs (``/usr/bin/time -v``), transform
tables in the disk cache: 1 min 38 s (94 s of CPU time, most of it compiling),
peak memory 6.9 GiB, reached while the simulator's 5.3 GiB of plans are in use (the
preset alone needs 4.7 GiB for one map per batch; before tables were made lazily,
this script peaked at 11.5 GiB). The first run on a machine builds and caches the
tables (about 45 s for the simulator's 3072 x 3072 grid and 35 s for the model's
2048 x 2048 grid, 5.6 GiB on disk).
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import keras_sphere
from keras_sphere.data import cmb
from keras_sphere.plotting import plot_mollweide


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healpix", type=pathlib.Path, help="HEALPix map in uK")
    parser.add_argument("--maps", type=int, default=4, help="simulated maps")
    parser.add_argument("--plot", type=pathlib.Path, default=pathlib.Path("cmb.png"))
    args = parser.parse_args(argv)

    model = keras_sphere.zoo.load("cmb_1024")
    training = model.preset_metadata["keras_sphere"]["training_data"]
    if args.healpix:
        import healpy

        maps = cmb.from_healpix(healpy.read_map(args.healpix), ell_max=1023)[None]
        labels = [None]
    else:
        # Maps the preset never saw: a seed of its own, same spectrum and amplitude.
        simulator = cmb.CMBSimulator(1023, alpha=training["alpha"], seed=12345)
        maps, labels = simulator.maps("test", range(args.maps))
        # The simulator's transform plans (5.3 GiB) are not the model's: free them
        # before predict makes the model's own tables (2.4 GiB).
        keras_sphere.sphere.clear_cache()
    probabilities = model.predict(maps, batch_size=2)
    for index, (p, label) in enumerate(zip(probabilities, labels, strict=True)):
        truth = "" if label is None else f" (truth: {model.classes[label]})"
        print(f"map {index}: P(non-Gaussian) = {p[1]:.3f}{truth}")

    import matplotlib

    matplotlib.use("Agg")
    shown = int(np.argmax(probabilities[:, 1]))
    ax = plot_mollweide(
        maps[shown],
        title=f"map {shown}: P(non-Gaussian) = {probabilities[shown, 1]:.3f}",
        units="temperature anisotropy (uK)",
    )
    ax.figure.savefig(args.plot, dpi=120, bbox_inches="tight")
    print(f"saved {args.plot}")


if __name__ == "__main__":
    main()
