"""The wheel carries the built-in presets and the stored CMB spectrum."""

import pathlib
import subprocess
import sys
import zipfile

import pytest

from keras_sphere.zoo.presets import BUILTIN_PRESETS
from keras_sphere.zoo.presets import builtin_directory

REPO = pathlib.Path(__file__).resolve().parents[2]
SHIPPED = {
    "config.json",
    "task.json",
    "metadata.json",
    "README.md",
    "reference.json",
    "metrics.json",
    "training_curves.png",
}


@pytest.mark.large
def test_wheel_contains_presets_and_data(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("keras_sphere-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "keras_sphere/data/cmb_planck2018_tt.npz" in names
    for name in BUILTIN_PRESETS:
        for file in builtin_directory(name).iterdir():
            packaged = f"keras_sphere/zoo/builtin/{name}/{file.name}"
            shipped = file.name in SHIPPED or file.name.endswith(".weights.h5")
            assert (packaged in names) == shipped, packaged
    # Recipes and caches stay in the repository.
    assert not any(n.endswith(".py") and "/zoo/builtin/" in n for n in names)
