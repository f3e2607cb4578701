"""keras_sphere.zoo: save -> load, built-in names, checksums, hub handles, errors."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keras_sphere import zoo
from keras_sphere.zoo import PresetError
from keras_sphere.zoo import loading
from keras_sphere.zoo import presets

SMALL = {"ell_max": 15, "J0": 1, "filters": (4,), "num_filter_params": (None,)}
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny fitted classifier saved as a preset, and a sample input."""
    from keras_sphere.models import CMBBackbone
    from keras_sphere.models import CMBClassifier

    rng = np.random.default_rng(0)
    model = CMBClassifier(CMBBackbone(**SMALL))
    for weight in model.trainable_weights:
        weight.assign(0.5 * rng.standard_normal(weight.shape).astype("float32"))
    x = (100 * rng.standard_normal((3, 32, 32))).astype("float32")
    directory = tmp_path_factory.mktemp("preset") / "tiny"
    zoo.save_preset(model, directory, metadata={"ell_max": 15}, sample_input=x)
    return model, directory, x


def test_save_writes_a_keras_hub_preset(saved):
    model, directory, _ = saved
    names = {p.name for p in directory.iterdir()}
    assert {
        "config.json",
        "model.weights.h5",
        "metadata.json",
        "README.md",
        "task.json",
        "task.weights.h5",
    } <= names
    metadata = json.loads((directory / "metadata.json").read_text())
    assert metadata["parameter_count"] == model.backbone.count_params()
    assert metadata["keras_sphere"]["ell_max"] == 15
    assert set(metadata["keras_sphere"]["sha256"]) == {
        "model.weights.h5",
        "task.weights.h5",
    }
    assert "To be written" in (directory / "README.md").read_text()


def test_round_trip_identical_outputs(saved):
    model, directory, x = saved
    loaded = zoo.load(str(directory))
    assert type(loaded).__name__ == "CMBClassifier"
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    assert loaded.preset_metadata["keras_sphere"]["ell_max"] == 15


def test_round_trip_bfloat16(saved):
    # bfloat16 keeps 8 bits of mantissa: probabilities agree to ~1e-2.
    model, directory, x = saved
    loaded = zoo.load(str(directory), dtype="bfloat16")
    assert loaded.dtype_policy.name == "bfloat16"
    np.testing.assert_allclose(
        np.asarray(loaded.predict(x, verbose=0), "float32"),
        model.predict(x, verbose=0),
        atol=5e-2,
    )


def test_load_weights_false_gives_fresh_same_architecture(saved):
    model, directory, _ = saved
    fresh = zoo.load(str(directory), load_weights=False)
    assert [w.shape for w in fresh.weights] == [w.shape for w in model.weights]
    differing = [
        not np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(fresh.trainable_weights, model.trainable_weights, strict=True)
    ]
    assert any(differing)


def test_load_backbone_is_headless(saved):
    model, directory, x = saved
    backbone = zoo.load_backbone(str(directory))
    assert type(backbone).__name__ == "CMBBackbone"
    np.testing.assert_array_equal(
        backbone.predict(x, verbose=0), model.backbone.predict(x, verbose=0)
    )


def test_config_override(saved):
    _, directory, _ = saved
    assert zoo.load(str(directory), dropout=0.1).dropout == 0.1


@pytest.fixture
def builtin(saved, monkeypatch, tmp_path):
    """Register a copy of the tiny preset as a built-in named 'tiny_test'."""
    _, directory, _ = saved
    root = tmp_path / "zoo"
    copy = root / "tiny_test"
    copy.mkdir(parents=True)
    for path in directory.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    recorded = json.loads((copy / "metadata.json").read_text())["keras_sphere"]
    monkeypatch.setitem(
        presets.BUILTIN_PRESETS,
        "tiny_test",
        {"task": "CMBClassifier", "description": "test", "sha256": recorded["sha256"]},
    )
    monkeypatch.setattr(loading, "builtin_directory", lambda name: root / name)
    monkeypatch.setattr(presets, "builtin_directory", lambda name: root / name)
    return copy


def test_builtin_name_loads(builtin, saved):
    model, _, x = saved
    loaded = zoo.load("tiny_test")
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    assert "tiny_test" in zoo.list_presets()
    assert "To be written" in zoo.card("tiny_test", show=False)


@pytest.mark.parametrize("damage", ["truncate", "alter"])
def test_damaged_weights_are_refused(builtin, damage):
    path = builtin / "model.weights.h5"
    content = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(content[: len(content) // 2])
    else:
        path.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    with pytest.raises(PresetError, match="corrupted or was altered.*Restore it"):
        zoo.load("tiny_test")


def test_checksums_in_metadata_protect_local_presets(saved, tmp_path):
    _, directory, _ = saved
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in directory.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    with open(copy / "task.weights.h5", "ab") as stream:
        stream.write(b"extra")
    with pytest.raises(PresetError, match="task.weights.h5.*corrupted"):
        zoo.load(str(copy))


def test_unknown_name_lists_presets_and_closest_match():
    with pytest.raises(PresetError, match=r"Did you mean 'cmb_1024'\?.*cmb_1024"):
        zoo.load("cmb_1204")
    with pytest.raises(PresetError, match="Built-in presets"):
        zoo.load("clowntown")


def test_not_a_preset_directory(tmp_path):
    with pytest.raises(PresetError, match="no config.json"):
        zoo.load(str(tmp_path))


def test_unversioned_kaggle_handle_is_refused():
    with pytest.raises(PresetError, match="pin a version"):
        zoo.load("kaggle://org/model/keras/variant")


def test_upload_preset_checks_the_handle(saved):
    _, directory, _ = saved
    with pytest.raises(PresetError, match="hf:// or kaggle://"):
        zoo.upload_preset("s3://bucket/x", directory)


def _hf_cache(root: pathlib.Path, repo: str, directory: pathlib.Path) -> None:
    org, name = repo.split("/")
    base = root / "hub" / f"models--{org}--{name}"
    revision = "0" * 40
    snapshot = base / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for path in directory.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(revision)


HF_SCRIPT = """
import sys
import numpy as np
import keras_sphere
from keras_sphere import zoo
model = zoo.load("hf://keras-sphere-test/tiny")
total = model.predict(np.load(sys.argv[1]), verbose=0).sum()
print("LOADED", type(model).__name__, total)
try:
    zoo.load("hf://keras-sphere-test/absent")
except zoo.PresetError as error:
    print("ERROR", error)
"""


def test_hf_handle_loads_offline_from_the_cache(saved, tmp_path):
    model, directory, x = saved
    _hf_cache(tmp_path / "hf", "keras-sphere-test/tiny", directory)
    np.save(tmp_path / "x.npy", x)
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run(
        [sys.executable, "-c", HF_SCRIPT, str(tmp_path / "x.npy")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = [line for line in result.stdout.splitlines() if line.startswith("LOADED")]
    assert loaded and "CMBClassifier" in loaded[0]
    expected = model.predict(x, verbose=0).sum()
    assert abs(float(loaded[0].split()[-1]) - expected) < 1e-4
    error = [line for line in result.stdout.splitlines() if line.startswith("ERROR")]
    assert error and "not in the cache" in error[0] and "HF_HUB_OFFLINE" in error[0]


def test_keras_hub_loads_our_presets_directly(saved):
    import keras_hub

    from keras_sphere.models import CMBClassifier

    model, directory, x = saved
    backbone = keras_hub.models.Backbone.from_preset(str(directory))
    task = CMBClassifier.from_preset(str(directory))
    assert type(backbone).__name__ == "CMBBackbone"
    np.testing.assert_array_equal(
        task.predict(x, verbose=0), model.predict(x, verbose=0)
    )
