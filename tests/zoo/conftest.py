"""Fixtures of the zoo tests: the recipes under zoo/ (source checkout only)."""

import importlib.util
import sys

import pytest

from keras_sphere.zoo.presets import builtin_directory


@pytest.fixture
def recipe_modules():
    """``load(name, *modules)``: zoo/<name>/<module>.py for each module, imported.

    Each is imported under its own name (``zoo_<name>_<module>``), so recipes of
    different presets coexist in one test; the siblings a recipe imports itself
    and the paths it puts on ``sys.path`` are removed afterwards. Skips in an
    installed copy, which has no recipes.
    """
    zoo = builtin_directory("cmb_1024").parent.resolve()
    path_before = list(sys.path)
    modules_before = set(sys.modules)

    def load(name: str, *modules: str):
        directory = zoo / name
        if not (directory / "train.py").exists():
            pytest.skip("the recipes are in the source checkout only")
        sys.path.insert(0, str(directory))  # for the recipes' own sibling imports
        loaded = []
        for module in modules:
            spec = importlib.util.spec_from_file_location(
                f"zoo_{name}_{module}", directory / f"{module}.py"
            )
            loaded.append(importlib.util.module_from_spec(spec))
            sys.modules[spec.name] = loaded[-1]
            spec.loader.exec_module(loaded[-1])
        return loaded[0] if len(loaded) == 1 else tuple(loaded)

    yield load
    sys.path[:] = path_before
    for added in set(sys.modules) - modules_before:
        file = getattr(sys.modules[added], "__file__", None) or ""
        if file.startswith(str(zoo)):
            del sys.modules[added]
