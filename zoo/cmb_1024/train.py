"""Step 2 of the cmb_1024 recipe: train the preset and its baselines, write the card.

Reads the cache written by ``data.py`` and:

1. trains the scattering + spherical CNN classifier on the cached features for
   each seed (validation accuracy picks the epoch), and evaluates on the test split;
2. trains baseline (a), the same CNN without scattering on the maps band-limited to
   L = 31 (64 x 64), for the same seeds;
3. fits baseline (b), logistic regression on the log power spectrum in 32 bands,
   and baseline (c), a threshold on the pixel skewness, on the training split;
4. puts the weights of the seed with the best validation accuracy into a full
   `CMBClassifier` on 2048 x 2048 maps and saves it here as the ``cmb_1024`` preset,
   with metrics.json, training_curves.png, reference.json and the model card.

    python zoo/cmb_1024/train.py [--cache-dir DIR] [--epochs 25] [--seeds 0 1 2]

Each network trains in the zoo's one loop (`keras_sphere.training.fit_run`), with
its back-up in ``~/.cache/keras_sphere/runs/cmb_1024/<network>_seed<seed>/``: an
interrupted call, run again, continues from there.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import subprocess
import time

import numpy as np

import keras_sphere  # noqa: F401  (selects the JAX backend)

HERE = pathlib.Path(__file__).resolve().parent
BATCH = 16
FILTERS = (16, 32, 32)
NUM_FILTER_PARAMS = (6, 6, None)
N_BANDS = 32


def _fit(model, train, validation, epochs: int, seed: int, run_dir: pathlib.Path):
    """Train with the zoo's one loop (`fit_run`): resumable, best by val accuracy.

    A run that was interrupted continues from its back-up in `run_dir`; the best
    weights by validation accuracy are loaded at the end. Returns the history of
    every epoch of the run, {name: [value per epoch]}.
    """
    import keras

    from keras_sphere.training import ResumableBatches
    from keras_sphere.training import fit_run
    from keras_sphere.training.loop import read_history

    # Every example once per epoch: the last batch is padded with examples of
    # sample weight 0 rather than dropped.
    batches = ResumableBatches(
        *train, batch_size=BATCH, shuffle=True, seed=seed, remainder="pad"
    )
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(1e-3, epochs * len(batches))
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        # Weighted, so that the padding examples (weight 0) do not count.
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=True,
    )
    result = fit_run(
        model,
        batches,
        run_dir,
        epochs=epochs,
        validation_data=validation,
        monitor="val_accuracy",
        mode="max",
        curve_metrics=("loss", "val_loss", "accuracy", "val_accuracy"),
        verbose=2,
    )
    model.load_weights(result["best_weights"])
    rows = read_history(run_dir / "history.csv")
    return {key: [row[key] for row in rows] for key in rows[0] if key != "epoch"}


def _accuracy(model, x, y) -> float:
    probabilities = model.predict(x, batch_size=32, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == y))


def train_scattering(splits, seed: int, epochs: int, runs: pathlib.Path):
    import keras

    from keras_sphere.layers import feature_statistics
    from keras_sphere.models.cmb import feature_classifier
    from keras_sphere.sphere import Grid

    keras.utils.set_random_seed(seed)
    features = {k: np.asarray(v["scattering"]) for k, v in splits.items()}
    labels = {k: np.asarray(v["labels"]) for k, v in splits.items()}
    n_s = features["train"].shape[1]
    mean, std = feature_statistics(features["train"], Grid(n_s, n_s))
    model = feature_classifier(
        features["train"].shape[1:], mean, std, FILTERS, NUM_FILTER_PARAMS
    )
    history = _fit(
        model,
        (features["train"], labels["train"]),
        (features["validation"], labels["validation"]),
        epochs,
        seed,
        runs / f"scattering_cnn_seed{seed}",
    )
    result = {
        split: _accuracy(model, features[split], labels[split])
        for split in ("validation", "test")
    }
    return model, history, result, (mean, std)


def train_lowpass(splits, seed: int, epochs: int, runs: pathlib.Path):
    import keras

    from keras_sphere.models import CMBBackbone
    from keras_sphere.models import CMBClassifier

    keras.utils.set_random_seed(seed)
    maps = {k: np.asarray(v["lowpass"]) for k, v in splits.items()}
    labels = {k: np.asarray(v["labels"]) for k, v in splits.items()}
    ell_max = maps["train"].shape[1] // 2 - 1
    backbone = CMBBackbone(
        ell_max=ell_max,
        filters=(8, *FILTERS),
        num_filter_params=(6, *NUM_FILTER_PARAMS),
        scattering=False,
    )
    model = CMBClassifier(backbone)
    history = _fit(
        model,
        (maps["train"], labels["train"]),
        (maps["validation"], labels["validation"]),
        epochs,
        seed,
        runs / f"lowpass_cnn_seed{seed}",
    )
    result = {
        split: _accuracy(model, maps[split], labels[split])
        for split in ("validation", "test")
    }
    return history, result


def _band_features(spectra: np.ndarray) -> np.ndarray:
    """log of the spectrum averaged in N_BANDS bands of ell >= 2 (2l + 1 weighted)."""
    ell = np.arange(spectra.shape[1])
    edges = np.unique(np.geomspace(2, ell[-1] + 1, N_BANDS + 1).astype(int))
    weights = 2 * ell + 1
    bands = [
        (spectra[:, lo:hi] * weights[lo:hi]).sum(1) / weights[lo:hi].sum()
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    return np.log(np.stack(bands, axis=1))


def spectrum_baseline(splits, seed: int) -> dict:
    """Logistic regression on log band powers, L2-regularised, early-stopped."""
    import keras

    keras.utils.set_random_seed(seed)
    x = {
        k: _band_features(np.asarray(v["spectrum"], np.float64))
        for k, v in splits.items()
    }
    mean, std = x["train"].mean(0), x["train"].std(0)
    x = {k: ((v - mean) / std).astype(np.float32) for k, v in x.items()}
    y = {k: np.asarray(v["labels"]) for k, v in splits.items()}
    model = keras.Sequential(
        [
            keras.Input((x["train"].shape[1],)),
            keras.layers.Dense(
                2, activation="softmax", kernel_regularizer=keras.regularizers.L2(1e-3)
            ),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x["train"],
        y["train"],
        validation_data=(x["validation"], y["validation"]),
        epochs=200,
        batch_size=64,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=20, restore_best_weights=True
            )
        ],
    )
    return {s: _accuracy(model, x[s], y[s]) for s in ("validation", "test")}


def skewness_baseline(splits) -> dict:
    """Threshold on the pixel skewness, fitted on the training split."""
    skew = {k: np.asarray(v["skewness"], np.float64) for k, v in splits.items()}
    y = {k: np.asarray(v["labels"]) for k, v in splits.items()}
    candidates = np.sort(skew["train"])
    accuracy = [np.mean((skew["train"] > t) == y["train"]) for t in candidates]
    threshold = float(candidates[int(np.argmax(accuracy))])
    result = {
        s: float(np.mean((skew[s] > threshold) == y[s])) for s in ("validation", "test")
    }
    result["threshold"] = threshold
    result["mean_gaussian"] = float(skew["test"][y["test"] == 0].mean())
    result["mean_non_gaussian"] = float(skew["test"][y["test"] == 1].mean())
    return result


def summary(values) -> dict:
    values = np.asarray(values, np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "values": values.tolist(),
    }


def plot_curves(histories: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for (label, history), color in zip(histories.items(), ("C0", "C1"), strict=False):
        axes[0].plot(history["loss"], color=color, label=f"{label} train")
        axes[0].plot(history["val_loss"], color=color, ls="--", label=f"{label} val")
        axes[1].plot(history["accuracy"], color=color, label=f"{label} train")
        axes[1].plot(
            history["val_accuracy"], color=color, ls="--", label=f"{label} val"
        )
    axes[0].set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0.4, 1.01))
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def build_preset(feature_model, mean, std):
    """The full classifier on 2048 x 2048 maps with the trained weights."""
    from data import ELL_MAX  # noqa: I001  (zoo/cmb_1024/data.py)
    from data import J0

    from keras_sphere.models import CMBBackbone
    from keras_sphere.models import CMBClassifier
    from keras_sphere.models.cmb import transfer_weights

    backbone = CMBBackbone(
        ell_max=ELL_MAX, J0=J0, filters=FILTERS, num_filter_params=NUM_FILTER_PARAMS
    )
    classifier = CMBClassifier(backbone)
    backbone.front.feature_mean.assign(mean.astype("float32"))
    backbone.front.feature_std.assign(std.astype("float32"))
    copied = transfer_weights(feature_model, classifier)
    expected = {
        layer.name
        for layer in feature_model.layers
        if layer.weights
        and layer.name.split("_")[0]
        in ("conv", "norm", "act", "readout", "head", "predictions")
    }
    missing = expected - set(copied)
    if missing:
        raise RuntimeError(f"Weights not transferred: {sorted(missing)}")
    return classifier


def main(argv=None) -> None:
    import sys

    sys.path.insert(0, str(HERE))
    from data import ALPHA  # noqa: I001
    from data import DEFAULT_CACHE
    from data import ELL_MAX
    from data import SEED
    from data import load_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=pathlib.Path, default=DEFAULT_CACHE)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument(
        "--baseline-epochs",
        type=int,
        default=20,
        help="epochs of baseline (a), whose steps at 64 x 64 cost ~4x more",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--output-dir", type=pathlib.Path, default=HERE, help="where the preset goes"
    )
    parser.add_argument(
        "--run-dir",
        type=pathlib.Path,
        default=None,
        help="the runs' back-ups (default ~/.cache/keras_sphere/runs/cmb_1024)",
    )
    args = parser.parse_args(argv)
    from keras_sphere.training import default_run_dir

    runs = args.run_dir or default_run_dir("cmb_1024")
    start = time.time()
    splits = {s: load_split(s, args.cache_dir) for s in ("train", "validation", "test")}
    sizes = {s: len(v["labels"]) for s, v in splits.items()}
    print("maps per split:", sizes)

    runs, curves = [], {}
    for seed in args.seeds:
        model, history, result, stats = train_scattering(
            splits, seed, args.epochs, runs
        )
        print(f"scattering + CNN, seed {seed}: {result}")
        runs.append((result["validation"], seed, model, stats, result))
        if seed == args.seeds[0]:
            curves["scattering + CNN"] = history
    lowpass = []
    for seed in args.seeds:
        history, result = train_lowpass(splits, seed, args.baseline_epochs, runs)
        print(f"CNN on L = 31 maps, seed {seed}: {result}")
        lowpass.append(result)
        if seed == args.seeds[0]:
            curves["CNN, L = 31 maps"] = history
    spectrum = [spectrum_baseline(splits, seed) for seed in args.seeds]
    print("power spectrum:", spectrum)
    skewness = skewness_baseline(splits)
    print("pixel skewness:", skewness)

    _, best_seed, best_model, (mean, std), best_result = max(runs, key=lambda r: r[:2])
    classifier = build_preset(best_model, mean, std)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(curves, out / "training_curves.png")

    from keras_sphere import zoo
    from keras_sphere.data.cmb import CMBSimulator

    simulator = CMBSimulator(ELL_MAX, alpha=ALPHA, seed=SEED)
    # A fixed sample: test maps 0 (Gaussian) and 1 (non-Gaussian), regenerated by seed.
    sample, sample_labels = simulator.maps("test", [0, 1])
    reference = classifier.predict(sample, batch_size=2, verbose=0)
    metrics = {
        "sizes": sizes,
        "preset": {"seed": best_seed, **best_result},
        "scattering_cnn_test_accuracy": summary([r[4]["test"] for r in runs]),
        "lowpass_cnn_test_accuracy": summary([r["test"] for r in lowpass]),
        "power_spectrum_test_accuracy": summary([r["test"] for r in spectrum]),
        "pixel_skewness": skewness,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "baseline_epochs": args.baseline_epochs,
        "wall_time_s": time.time() - start,
        "hardware": f"{platform.processor() or platform.machine()}, CPU only",
        "git_commit": _git_commit(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "reference.json").write_text(
        json.dumps(
            {
                "simulator": simulator.config(),
                "split": "test",
                "indices": [0, 1],
                "labels": sample_labels.tolist(),
                "probabilities": reference.tolist(),
                "atol": 0.01,
            },
            indent=2,
        )
        + "\n"
    )
    from card import metadata  # noqa: I001  (zoo/cmb_1024/card.py)
    from card import model_card

    zoo.save_preset(
        classifier,
        out,
        model_card=model_card(metrics, classifier),
        metadata=metadata(metrics, classifier),
    )
    print(json.dumps(metrics, indent=2))


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=HERE,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
