"""The wheel carries the built-in presets and the stored CMB spectrum."""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest
import tomllib

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
    "rmse.png",
    "forecast.png",
    "sample_states.nc",
    "sample_climatology.nc",
}


def source_packages() -> set[str]:
    return {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "keras_sphere").rglob("__init__.py")
    }


def test_every_package_is_listed_for_the_wheel():
    # pyproject.toml names packages one by one (zoo/ is mapped into the package): a
    # new subpackage left out would be missing from installed copies only.
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    assert source_packages() == listed - {"keras_sphere.zoo.builtin"}


def run_pip(*arguments: str) -> None:
    """Run pip quietly; on failure, fail with the end of what it printed.

    pip's own summary of a failed build hides the cause in the middle of hundreds of
    lines, which CI logs cut; the last lines name it (a file that could not be
    copied, a full disk).
    """
    result = subprocess.run(
        [sys.executable, "-m", "pip", *arguments],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).splitlines()
        pytest.fail(
            f"pip {arguments[0]} exited with {result.returncode}; its last lines:\n"
            + "\n".join(output[-60:]),
            pytrace=False,
        )


def preset_bytes() -> int:
    return sum(
        file.stat().st_size
        for name in BUILTIN_PRESETS
        for file in builtin_directory(name).iterdir()
    )


@pytest.mark.large
def test_wheel_contains_presets_and_data(tmp_path):
    # The presets are copied four times (build tree, wheel staging, the wheel, the
    # installed copy): say so plainly when the disk cannot hold them.
    needed = 5 * preset_bytes()
    for place in (REPO, tmp_path):
        free = shutil.disk_usage(place).free
        assert free > needed, (
            f"{place} has {free / 1e6:.0f} MB free; building and installing the wheel "
            f"needs about {needed / 1e6:.0f} MB: free some disk and rerun"
        )
    run_pip("wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path))
    (wheel,) = tmp_path.glob("keras_sphere-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "keras_sphere/data/cmb_planck2018_tt.npz" in names
    for package in source_packages():
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    for name in BUILTIN_PRESETS:
        for file in builtin_directory(name).iterdir():
            packaged = f"keras_sphere/zoo/builtin/{name}/{file.name}"
            shipped = file.name in SHIPPED or file.name.endswith(".weights.h5")
            assert (packaged in names) == shipped, packaged
    # Recipes and caches stay in the repository.
    assert not any(n.endswith(".py") and "/zoo/builtin/" in n for n in names)

    # Installed (outside the source tree), built-in presets resolve inside the package.
    target = tmp_path / "site"
    run_pip("install", "--no-deps", "-q", "--target", str(target), str(wheel))
    script = (
        "import keras_sphere; from keras_sphere.zoo.presets import builtin_directory; "
        "print(keras_sphere.__file__); "
        "print(builtin_directory('cmb_1024')); "
        "print(keras_sphere.zoo.card('cmb_1024', show=False).splitlines()[0])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        timeout=300,
        check=True,
    )
    module, directory, title = result.stdout.splitlines()[-3:]
    assert module.startswith(str(target))
    assert directory == str(target / "keras_sphere/zoo/builtin/cmb_1024")
    assert title.startswith("# cmb_1024")
