"""The registry of built-in presets and where their files live.

A built-in preset is a folder of the repository's top-level ``zoo/`` directory (its
recipe, card and keras-hub preset files). Installed wheels carry the same folders as
the package ``keras_sphere.zoo.builtin`` (``pyproject.toml`` maps it to ``zoo/``).
The sha256 of each weights file is recorded here, apart from the files it checks.
"""

from __future__ import annotations

import pathlib

__all__ = ["BUILTIN_PRESETS", "builtin_directory"]

BUILTIN_PRESETS: dict[str, dict] = {
    "cmb_1024": {
        "task": "CMBClassifier",
        "description": (
            "Gaussian versus local-type non-Gaussian CMB temperature maps at "
            "L = 1023 (2048 x 2048): scattering front end, spherical CNN, "
            "invariant readout."
        ),
        "sha256": {
            "model.weights.h5": "174664b29db4e295bee60f35a5e3d7a89ef4086e7e31acf276447503617a756d",  # noqa: E501
            "task.weights.h5": "1d5ab5c1625cb49a03bc36ec0f4d0acc17961d9e4cc2f9a345427cb1b035ac66",  # noqa: E501
        },
    },
    "qm9": {
        "task": "QM9Regressor",
        "description": (
            "The 12 QM9 properties of molecules of H, C, N, O, F (up to 29 atoms) "
            "from their 3D geometry: spin-spherical CNN per atom, one tail per "
            "target; trained on real QM9 DFT geometries (dimenet split)."
        ),
        "sha256": {
            "model.weights.h5": "a58d936c05975ecebca0aa460d8db930cc188bea30d2fd270887acddbf3291fa",  # noqa: E501
            "task.weights.h5": "24fc6e4a02d1c6484c6d6806b254b1ca2c122b825a26f7d949052214da9a9467",  # noqa: E501
        },
    },
    "qm9_h": {
        "task": "QM9Regressor",
        "description": (
            "QM9 enthalpy H (atomization, 298 K) of molecules of H, C, N, O, F (up "
            "to 29 atoms) from their 3D geometry: the qm9 preset's backbone and H "
            "tail, fine-tuned on H alone (real QM9 DFT geometries, dimenet split)."
        ),
        "sha256": {
            "model.weights.h5": "1893c87daddd1dfda818880d6b1c9a21df447dcde60de43f1ae6a6a15eb779d7",  # noqa: E501
            "task.weights.h5": "d4569b8c2d28bdcbf55b43ef0dc8027dd6e0f85e279df16113c249b53181436c",  # noqa: E501
        },
    },
    "weather_64": {
        "task": "WeatherForecaster",
        "description": (
            "6-hourly forecasts of geopotential, temperature and wind on 4 pressure "
            "levels, 64 x 64 grid (L = 31), rolled out to 5 days; pretrained on a "
            "simulated Held-Suarez atmosphere (T42), not ERA5."
        ),
        "sha256": {
            "model.weights.h5": "bb78197d830ef60368f06f83aa4a34c92eb48d581d5b9be89d8619c44df99bc6",  # noqa: E501
        },
    },
    "weather_256": {
        "task": "PooledWeatherForecaster",
        "description": (
            "6-hourly forecasts of geopotential, temperature and wind on 4 pressure "
            "levels, 256 x 256 grid (L = 127), rolled out to 5 days; spectral "
            "pooling to 64 x 64 plus a full-grid branch; pretrained on a simulated "
            "Held-Suarez atmosphere (T85), not ERA5."
        ),
        "sha256": {
            "model.weights.h5": "a36c7419cea3ec29655315c2c5dd1ae34cec1e58c29b6a5a0e55d38fe8c5d442",  # noqa: E501
        },
    },
}


def _zoo_root() -> pathlib.Path:
    installed = pathlib.Path(__file__).resolve().parent / "builtin"
    if installed.is_dir():  # a wheel: zoo/ was packaged as keras_sphere/zoo/builtin
        return installed
    # Source checkout: keras_sphere/zoo/presets.py -> <repo>/zoo
    return pathlib.Path(__file__).resolve().parents[2] / "zoo"


def builtin_directory(name: str) -> pathlib.Path:
    """The folder of built-in preset `name` (a registry key)."""
    return _zoo_root() / name
