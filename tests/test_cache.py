"""One cache root for tables, data and runs: ``KERAS_SPHERE_CACHE``."""

import pathlib

import pytest

from keras_sphere._cache import cache_root
from keras_sphere._cache import home_cache_root
from keras_sphere.training.loop import default_run_dir


def test_default_is_under_the_home_cache(monkeypatch):
    monkeypatch.delenv("KERAS_SPHERE_CACHE", raising=False)
    assert cache_root() == pathlib.Path.home() / ".cache" / "keras_sphere"
    assert default_run_dir("x") == home_cache_root() / "runs" / "x"


def test_a_set_root_is_used_everywhere(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_SPHERE_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    assert default_run_dir("x") == tmp_path / "runs" / "x"


@pytest.mark.parametrize("setting", ["off", "OFF", "0", "none", "false"])
def test_off_turns_caches_off_but_runs_keep_the_default_root(monkeypatch, setting):
    monkeypatch.setenv("KERAS_SPHERE_CACHE", setting)
    assert cache_root() is None
    assert default_run_dir("x") == home_cache_root() / "runs" / "x"
