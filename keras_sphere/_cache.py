"""Where keras-sphere keeps what it computes once: ``$KERAS_SPHERE_CACHE``.

One setting for every cache: SHT tables (`keras_sphere.sphere.sht_tables`), the
parsed QM9 table (`keras_sphere.data.qm9`) and training runs
(`keras_sphere.training.loop.default_run_dir`). Default ``~/.cache/keras_sphere``;
``off`` (or ``0``, ``none``, ``false``) turns the disk caches off.
"""

from __future__ import annotations

import os
import pathlib

__all__ = ["cache_root", "home_cache_root"]

_OFF = ("off", "0", "none", "false")


def home_cache_root() -> pathlib.Path:
    """``~/.cache/keras_sphere``, the default root."""
    return pathlib.Path.home() / ".cache" / "keras_sphere"


def cache_root() -> pathlib.Path | None:
    """The cache root, or None when ``KERAS_SPHERE_CACHE`` turns caching off."""
    setting = os.environ.get("KERAS_SPHERE_CACHE", "")
    if setting.lower() in _OFF:
        return None
    return pathlib.Path(setting) if setting else home_cache_root()
