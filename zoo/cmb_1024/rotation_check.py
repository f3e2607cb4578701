"""Step 3 of the cmb_1024 recipe: does the preset's answer survive rotating the sky?

Regenerates test maps, rotates each one by a random rotation exactly in harmonic
space (healpy's `rotate_alm`, then our synthesis: the rotated map is the same
band-limited field, not an interpolation), classifies both versions and records the
accuracy of each and how much P(non-Gaussian) moved. The result goes into
metrics.json and the model card.

    python zoo/cmb_1024/rotation_check.py [--maps 64]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

import keras_sphere

HERE = pathlib.Path(__file__).resolve().parent


def main(argv=None) -> None:
    import healpy
    from keras.utils import Progbar

    sys.path.insert(0, str(HERE))
    from card import model_card  # noqa: I001
    from data import simulator

    from keras_sphere.data.cmb import from_healpix_alm
    from keras_sphere.data.cmb import to_healpix_alm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="of the rotations")
    args = parser.parse_args(argv)
    model = keras_sphere.zoo.load("cmb_1024")
    sim = simulator()
    rng = np.random.default_rng(args.seed)
    original, rotated, labels = [], [], []
    progress = Progbar(args.maps, unit_name="map")
    for index in range(args.maps):
        coeffs, label = sim.coefficients("test", [index])
        # Uniform random rotation: psi, phi uniform, cos(theta) uniform.
        psi, phi = rng.uniform(0, 2 * np.pi, 2)
        theta = np.arccos(rng.uniform(-1, 1))
        alm = to_healpix_alm(coeffs[0])
        healpy.rotate_alm(alm, psi, theta, phi)  # in place
        pair = sim.synthesise(np.stack([coeffs[0], from_healpix_alm(alm)]))
        p = model.predict(pair, batch_size=2, verbose=0)[:, 1]
        original.append(p[0])
        rotated.append(p[1])
        labels.append(int(label[0]))
        progress.update(index + 1)
    original, rotated, labels = map(np.asarray, (original, rotated, labels))
    result = {
        "maps": args.maps,
        "accuracy_original": float(np.mean((original > 0.5) == labels)),
        "accuracy_rotated": float(np.mean((rotated > 0.5) == labels)),
        "mean_abs_change_p_non_gaussian": float(np.mean(np.abs(rotated - original))),
        "max_abs_change_p_non_gaussian": float(np.max(np.abs(rotated - original))),
        "decisions_changed": int(np.sum((rotated > 0.5) != (original > 0.5))),
    }
    print(json.dumps(result, indent=2))
    metrics_path = HERE / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["rotation_check"] = result
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    (HERE / "README.md").write_text(model_card(metrics, model))


if __name__ == "__main__":
    main()
