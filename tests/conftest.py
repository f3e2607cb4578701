"""Shared pytest configuration: markers, seeds and float64 mode."""

import os
import zlib

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--run_large", action="store_true", help="run tests marked large")
    parser.addoption(
        "--run_extra_large", action="store_true", help="run tests marked extra_large"
    )
    parser.addoption("--seed", type=int, default=20261121, help="base random seed")


def pytest_collection_modifyitems(config, items):
    skip = {
        "large": None if config.getoption("--run_large") else "needs --run_large",
        "extra_large": None
        if config.getoption("--run_extra_large")
        else "needs --run_extra_large",
    }
    for item in items:
        for marker, reason in skip.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from --seed and the test's name (reproducible)."""
    seed = request.config.getoption("--seed")
    return np.random.default_rng([seed, zlib.crc32(request.node.name.encode())])


@pytest.fixture
def x64():
    """Switch JAX to float64 for one test and restore the previous setting."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)
