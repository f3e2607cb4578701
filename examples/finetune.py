"""Fine-tune the pretrained cmb_1024 preset on new data, against training from scratch.

The new task: non-Gaussianity three times weaker than the preset was trained on
(alpha = preset alpha / 3 by default), with few labelled maps. The script

1. simulates the new maps at L = 1023 and caches their scattering features (the
   preset's front end is frozen, so features are computed once; reruns are instant);
2. loads the preset with one call and keeps its head (same two classes);
3. phase 1: freezes the backbone and trains the head; phase 2: unfreezes the
   backbone and trains everything with a 10x lower learning rate;
4. trains the same architecture from a fresh initialisation for the same number
   of epochs, and prints both test accuracies and saves their curves.

    python examples/finetune.py [--train 128 --test 128 --epochs 10]

Measured on 2 CPU cores shared with other jobs (``/usr/bin/time -v``), defaults,
transform tables in the disk cache: 13 min (12 min 21 s of CPU time; simulating and
scattering the 256 maps take 11 of them), peak memory 6.9 GiB, while the maps are
simulated (the simulator's and the scattering transform's plans: 5.6 GiB; before
the preset loaded lazily, the script passed 9.4 GiB). A second run reads the cached
features: 2 min, peak 1.8 GiB. The first run on a machine also
builds the tables (about 45 s for the simulator's grid, 35 s for the maps').
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import pathlib

import numpy as np

import keras_sphere
from keras_sphere.data import cmb
from keras_sphere.layers import scattering_features

CACHE = pathlib.Path.home() / ".cache/keras_sphere/finetune_cmb"
PRESET_J0 = 4  # the scattering scale of cmb_1024 (checked once it is loaded)
# Maps per simulated batch: 2 peaks 0.5 GiB below 4 and is hardly slower.
BATCH_SIZE = 2


def new_data(alpha: float, sizes: dict, J0: int) -> dict:  # noqa: N803
    """Scattering features and labels of the new maps, cached per split."""
    simulator = cmb.CMBSimulator(1023, alpha=alpha, seed=777)
    directories = {split: CACHE / f"alpha_{alpha:g}" / split for split in sizes}
    if not all(finished(directories[s], n) for s, n in sizes.items()):
        # Compile the scattering transform before the simulator's 3.2 GiB plan exists,
        # so that the compiler's working memory (about 1 GiB) is given back first
        # instead of coming on top (peak 7.4 GiB without this, 6.9 GiB with it).
        n = 2 * (simulator.ell_max + 1)
        scattering_features(np.zeros((BATCH_SIZE, n, n), "float32"), J0, verbose=0)
        return_freed_memory()

    def features(maps, coeffs):
        values = np.asarray(scattering_features(maps, J0, verbose=0))
        return_freed_memory()
        return values

    return {
        split: cmb.generate(
            simulator,
            split,
            count,
            {"scattering": features},
            cache_dir=directories[split],
            batch_size=BATCH_SIZE,
        )
        for split, count in sizes.items()
    }


def finished(directory: pathlib.Path, count: int) -> bool:
    """Whether a cached split already holds `count` maps."""
    try:
        return cmb.read_record(directory).get("done", 0) >= count
    except (OSError, ValueError):
        return False


def return_freed_memory() -> None:
    """Give memory freed by the compiler and the transforms back to the system.

    glibc keeps freed blocks for reuse; over the 128 simulated batches that grew the
    process from 7.2 to 8.5 GiB. Trimming after each batch keeps it at what is in use.
    Linux with glibc only; elsewhere it does nothing.
    """
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def fit(model, data, epochs: int, learning_rate: float):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(
        np.asarray(data["train"]["scattering"]),
        np.asarray(data["train"]["labels"]),
        validation_data=(
            np.asarray(data["test"]["scattering"]),
            np.asarray(data["test"]["labels"]),
        ),
        epochs=epochs,
        batch_size=16,
        verbose=2,
    )
    return history.history


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=128)
    parser.add_argument("--test", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10, help="per phase")
    parser.add_argument("--alpha", type=float, help="default: the preset's alpha / 3")
    parser.add_argument(
        "--plot", type=pathlib.Path, default=pathlib.Path("finetune.png")
    )
    args = parser.parse_args(argv)

    # The data first, then the preset: the simulator and the scattering transform
    # hold 5.6 GiB of transform plans while they run, and the preset's TensorFlow and
    # keras-hub add 0.7 GiB; together they would pass 7.5 GiB (8 GB). The preset's
    # scattering front end never runs here (it trains on cached features), so its
    # own tables are never made.
    training = keras_sphere.zoo.list_presets()["cmb_1024"]["training_data"]
    alpha = args.alpha or training["alpha"] / 3
    print(f"new data: alpha = {alpha:g} (preset: {training['alpha']:g})")
    data = new_data(alpha, {"train": args.train, "test": args.test}, PRESET_J0)
    keras_sphere.sphere.clear_cache()  # the simulator's plans: 5.6 GiB

    pretrained = keras_sphere.zoo.load("cmb_1024")
    if pretrained.backbone.J0 != PRESET_J0:
        raise ValueError(
            f"The preset's scattering uses J0={pretrained.backbone.J0}, the cached "
            f"features J0={PRESET_J0}: set PRESET_J0 in {__file__}."
        )

    # Fine-tuning. feature_model() shares every weight with the preset.
    tuned = pretrained.feature_model()
    pretrained.backbone.trainable = False
    print("phase 1: backbone frozen, head trains")
    first = fit(tuned, data, args.epochs, 1e-3)
    pretrained.backbone.trainable = True
    print("phase 2: everything trains, learning rate / 10")
    second = fit(tuned, data, args.epochs, 1e-4)

    # The same architecture from scratch, for the same number of epochs.
    scratch = keras_sphere.zoo.load("cmb_1024", load_weights=False)
    scratch.backbone.front.adapt_features(np.asarray(data["train"]["scattering"]))
    print("from scratch")
    fresh = fit(scratch.feature_model(), data, 2 * args.epochs, 1e-3)

    tuned_accuracy = second["val_accuracy"][-1]
    fresh_accuracy = fresh["val_accuracy"][-1]
    print(
        f"test accuracy on {args.test} new maps after {2 * args.epochs} epochs on "
        f"{args.train}: fine-tuned {tuned_accuracy:.3f}, from scratch "
        f"{fresh_accuracy:.3f}"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(first["val_accuracy"] + second["val_accuracy"], label="fine-tuned")
    ax.plot(fresh["val_accuracy"], label="from scratch")
    ax.axvline(args.epochs - 0.5, color="gray", ls=":", label="backbone unfrozen")
    ax.set(xlabel="epoch", ylabel="test accuracy", ylim=(0.4, 1.01))
    ax.legend()
    figure.tight_layout()
    figure.savefig(args.plot, dpi=110)
    print(f"saved {args.plot}")


if __name__ == "__main__":
    main()
