"""Resolve preset handles, check weights, load, save and upload presets.

A handle is, in this order: an existing local preset directory, a built-in name
(`presets.BUILTIN_PRESETS`), ``hf://org/name`` or ``kaggle://org/model/keras/
variant/version``. Loading goes through keras-hub (`Task.from_preset` where the
preset has a ``task.json``, else `Backbone.from_preset`), after checking the sha256
of the weights files against the registry (built-ins) or against the hashes
`save_preset` wrote into ``metadata.json``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import pathlib
import shutil
import tempfile

import keras
import numpy as np

from keras_sphere._backend import import_tensorflow_quietly
from keras_sphere.zoo.listing import PresetListing
from keras_sphere.zoo.presets import BUILTIN_PRESETS
from keras_sphere.zoo.presets import builtin_directory

__all__ = [
    "PresetError",
    "card",
    "list_presets",
    "load",
    "load_backbone",
    "save_preset",
    "upload_preset",
]

CONFIG_FILE = "config.json"
TASK_CONFIG_FILE = "task.json"
METADATA_FILE = "metadata.json"
CARD_FILE = "README.md"
WEIGHT_FILES = ("model.weights.h5", "task.weights.h5")
_SCHEMES = ("hf", "kaggle")


class PresetError(ValueError):
    """A preset that cannot be found, fetched or trusted; the message says why."""


def _import_models() -> None:
    # Registers every keras_sphere model class for deserialisation.
    import keras_sphere.models  # noqa: F401


def _keras_hub():
    """The keras_hub module; it imports TensorFlow, whose start-up logs stay hidden."""
    import_tensorflow_quietly()
    import keras_hub

    return keras_hub


def _sha256(path: pathlib.Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- resolution --------------------------------------------------------------------


def _scheme(handle: str) -> str | None:
    return handle.split("://", 1)[0].lower() if "://" in handle else None


def resolve(handle: str) -> tuple[str, dict]:
    """(keras-hub preset identifier, expected sha256 by file or {}) for a handle."""
    if not isinstance(handle, str | os.PathLike):
        raise TypeError(f"A preset handle must be a string. Received: {handle!r}")
    handle = os.fspath(handle)
    if os.path.isdir(handle):
        if not os.path.exists(os.path.join(handle, CONFIG_FILE)):
            raise PresetError(
                f"{handle} is a directory but not a preset: it has no {CONFIG_FILE}. "
                "Write presets with keras_sphere.zoo.save_preset."
            )
        return handle, {}
    if handle in BUILTIN_PRESETS:
        directory = builtin_directory(handle)
        if not (directory / CONFIG_FILE).exists():
            raise PresetError(
                f"The built-in preset {handle!r} has no trained files in {directory}. "
                f"Train it with the recipe in zoo/{handle}/ (see its README.md), or "
                "reinstall keras-sphere."
            )
        return str(directory), dict(BUILTIN_PRESETS[handle]["sha256"])
    scheme = _scheme(handle)
    if scheme in _SCHEMES:
        if scheme == "kaggle" and len(handle.split("://", 1)[1].split("/")) != 5:
            raise PresetError(
                "Kaggle handles must pin a version: kaggle://org/model/keras/variant/"
                f"version (an unversioned handle needs the network). Received: {handle}"
            )
        return handle, {}
    close = difflib.get_close_matches(handle, list(BUILTIN_PRESETS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise PresetError(
        f"Unknown preset {handle!r}.{hint} Built-in presets: "
        f"{sorted(BUILTIN_PRESETS)}. A handle can also be a local preset directory, "
        "hf://org/name or kaggle://org/model/keras/variant/version."
    )


def _fetch(preset: str, filename: str) -> str:
    """Local path of one preset file (downloaded or read from the hub cache)."""
    _keras_hub()
    from keras_hub.src.utils.preset_utils import get_file

    try:
        return get_file(preset, filename)
    except FileNotFoundError:
        raise
    except Exception as error:  # hub clients raise many types when offline
        if _scheme(preset) not in _SCHEMES:
            raise
        raise PresetError(_not_cached_message(preset, filename, error)) from error


def _not_cached_message(preset: str, filename: str, error: Exception) -> str:
    if _scheme(preset) == "hf":
        cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
        )
        fetch = (
            f"Fetch it once with network access (keras_sphere.zoo.load({preset!r}) "
            "or `hf download " + preset.removeprefix("hf://") + "`) and unset "
            "HF_HUB_OFFLINE"
        )
    else:
        cache = os.environ.get(
            "KAGGLEHUB_CACHE", os.path.expanduser("~/.cache/kagglehub")
        )
        fetch = (
            f"Fetch it once with network access (keras_sphere.zoo.load({preset!r})) "
            "with KAGGLE_USERNAME and KAGGLE_KEY set"
        )
    return (
        f"Could not get {filename} of preset {preset}: it is not in the cache "
        f"({cache}) and could not be downloaded, or the preset does not exist "
        f"({type(error).__name__}: {error}). {fetch}; later loads then work offline."
    )


def _exists(preset: str, filename: str) -> bool:
    try:
        _fetch(preset, filename)
    except FileNotFoundError:
        return False
    return True


def _read_json(preset: str, filename: str) -> dict:
    with open(_fetch(preset, filename), encoding="utf-8") as stream:
        return json.load(stream)


def _check_weights(preset: str, handle: str, expected: dict) -> None:
    """Verify each weights file's sha256 (registry first, then metadata.json)."""
    if not expected and _exists(preset, METADATA_FILE):
        recorded = _read_json(preset, METADATA_FILE).get("keras_sphere", {})
        expected = recorded.get("sha256", {})
    for filename, digest in expected.items():
        path = _fetch(preset, filename)
        actual = _sha256(path)
        if actual != digest:
            size = os.path.getsize(path)
            raise PresetError(
                f"The weights file {path} of preset {handle!r} is corrupted or was "
                f"altered: its sha256 is {actual} ({size} bytes), expected {digest}. "
                "Restore it (git checkout or reinstall keras-sphere for built-in "
                "presets; delete it from the hub cache to download it again) and "
                "load again."
            )


# -- loading -----------------------------------------------------------------------


def load(
    name_or_handle: str,
    load_weights: bool = True,
    dtype=None,
    **config_overrides,
) -> keras.Model:
    """A ready `keras.Model` from a preset: the task model if it has one.

    Args:
        name_or_handle: built-in name (see `list_presets`), local preset directory,
            ``hf://org/name`` or ``kaggle://org/model/keras/variant/version``.
        load_weights: False gives the same architecture freshly initialised.
        dtype: dtype policy override, e.g. "bfloat16" or "mixed_bfloat16".
        **config_overrides: constructor arguments of the backbone or task that
            replace the stored ones (e.g. ``dropout=0.1``).

    Returns:
        The model (a keras-hub `Task` or `Backbone` subclass), with the preset's
        metadata as ``model.preset_metadata``.

    Raises:
        PresetError: unknown name (with the closest match), a hub preset that is
            not cached while offline, or weights whose sha256 does not match.
    """
    return _load(name_or_handle, load_weights, dtype, config_overrides, task=True)


def load_backbone(
    name_or_handle: str,
    load_weights: bool = True,
    dtype=None,
    **config_overrides,
) -> keras.Model:
    """The headless backbone of a preset, for fine-tuning with a new head.

    Same arguments and errors as `load`.
    """
    return _load(name_or_handle, load_weights, dtype, config_overrides, task=False)


def _load(handle, load_weights, dtype, overrides, task: bool) -> keras.Model:
    keras_hub = _keras_hub()
    _import_models()
    preset, expected = resolve(handle)
    try:
        _fetch(preset, CONFIG_FILE)
    except FileNotFoundError as error:
        # Offline hub clients report an uncached file as missing.
        raise PresetError(_not_cached_message(preset, CONFIG_FILE, error)) from error
    if load_weights:
        _check_weights(preset, handle, expected)
    kwargs = dict(overrides)
    if dtype is not None:
        kwargs["dtype"] = dtype
    has_task = _exists(preset, TASK_CONFIG_FILE)
    try:
        if task and has_task:
            task_class = _registered_class(_read_json(preset, TASK_CONFIG_FILE), handle)
            model = task_class.from_preset(preset, load_weights=load_weights, **kwargs)
        else:
            model = keras_hub.models.Backbone.from_preset(
                preset, load_weights=load_weights, **kwargs
            )
    except (OSError, ValueError) as error:
        if isinstance(error, PresetError) or "Unable to" not in str(error):
            raise
        raise PresetError(
            f"The weights of preset {handle!r} could not be read ({error}). The file "
            "is truncated or is not a Keras weights file: restore or re-download it."
        ) from error
    metadata = (
        _read_json(preset, METADATA_FILE) if _exists(preset, METADATA_FILE) else {}
    )
    model.preset_metadata = metadata
    return model


def _registered_class(config: dict, handle: str):
    name = config.get("registered_name")
    found = keras.saving.get_registered_object(name) if name else None
    if found is None:
        raise PresetError(
            f"Preset {handle!r} needs the class {name!r}, which is not registered. "
            "Import the package that defines it (or upgrade keras-sphere) first."
        )
    return found


# -- listing and cards ---------------------------------------------------------------


def list_presets() -> PresetListing:
    """The built-in presets and what each one is, shown as a table.

    >>> keras_sphere.zoo.list_presets()  # doctest: +SKIP
    name      task           grid         inputs     size           headline ...
    --------  -------------  -----------  ---------  -------------  -------- ...
    cmb_1024  CMBClassifier  2048 x 2048  maps (uK)  73,788 params  preset_t ...

    Returns:
        A dict (a `PresetListing`, whose repr is the table; ``print`` it in a
        script): name -> {task, description, parameters, grid, ell_max, inputs,
        outputs (with units), training_data, metrics, ..., handle}; the fields
        beyond task and description come from the preset's metadata.json. A
        preset without metadata (not trained yet) has a ``status`` instead.
    """
    listing = PresetListing()
    for name, entry in BUILTIN_PRESETS.items():
        path = builtin_directory(name) / METADATA_FILE
        info = {"task": entry["task"], "description": entry["description"]}
        if path.exists():
            metadata = json.loads(path.read_text())
            domain = metadata.get("keras_sphere", {})
            info.update(
                {
                    "parameters": metadata.get("parameter_count"),
                    **{k: v for k, v in domain.items() if k != "sha256"},
                }
            )
        else:
            info["status"] = f"not trained: run the recipe in zoo/{name}/"
        info["handle"] = name
        listing[name] = info
    return listing


def card(name_or_handle: str, show: bool = True) -> str:
    """The model card (README.md) of a preset; printed unless ``show=False``."""
    preset, _ = resolve(name_or_handle)
    with open(_fetch(preset, CARD_FILE), encoding="utf-8") as stream:
        text = stream.read()
    if show:
        print(text)
    return text


# -- saving and uploading ------------------------------------------------------------


def save_preset(
    model: keras.Model,
    directory: str | os.PathLike,
    model_card: str | None = None,
    metadata: dict | None = None,
    sample_input=None,
) -> pathlib.Path:
    """Write a keras-hub preset folder with its model card, and check it loads.

    Files: ``config.json``, ``model.weights.h5``, ``metadata.json`` (keras-hub's,
    plus a ``keras_sphere`` section with `metadata` and the weights' sha256),
    ``README.md`` and, for a task, ``task.json`` and ``task.weights.h5``.

    Args:
        model: a keras-hub `Task` or `Backbone` (e.g. `CMBClassifier`).
        directory: the preset folder (created; existing preset files replaced).
        model_card: Markdown text of the card; default a skeleton from `metadata`
            that says which sections are still to be written.
        metadata: JSON-serialisable domain information: grid, ell_max, inputs and
            outputs with units, training data, metrics, recipe...
        sample_input: optional input batch; the reloaded preset must reproduce the
            model's outputs on it (atol 1e-5). Without it, the reloaded weights
            must equal the model's.

    Returns:
        The directory.
    """
    if not hasattr(model, "save_to_preset"):
        raise TypeError(
            "save_preset needs a keras-hub Task or Backbone (such as "
            f"keras_sphere.models.CMBClassifier). Received {type(model).__name__}."
        )
    directory = pathlib.Path(directory)
    model.save_to_preset(str(directory))
    hashes = {
        name: _sha256(directory / name)
        for name in WEIGHT_FILES
        if (directory / name).exists()
    }
    meta_path = directory / METADATA_FILE
    stored = json.loads(meta_path.read_text())
    from keras_sphere import __version__

    stored["keras_sphere_version"] = __version__
    stored["keras_sphere"] = {**(metadata or {}), "sha256": hashes}
    meta_path.write_text(json.dumps(stored, indent=2, default=_json_default) + "\n")
    text = model_card if model_card is not None else _card_skeleton(model, metadata)
    (directory / CARD_FILE).write_text(text)
    _validate(model, directory, sample_input)
    return directory


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _card_skeleton(model: keras.Model, metadata: dict | None) -> str:
    lines = [
        f"# {model.name}",
        "",
        "Model card skeleton written by keras_sphere.zoo.save_preset: fill in each "
        "section (keras-and-zoo.md section 7).",
        "",
        f"- Class: {type(model).__name__}",
        f"- Parameters (Keras count): {model.count_params():,}",
        "",
    ]
    for key, value in (metadata or {}).items():
        lines.append(f"- {key}: {json.dumps(value, default=_json_default)}")
    for section in (
        "Training data",
        "Inputs and outputs",
        "Recipe",
        "Held-out metrics with baselines",
        "Limitations",
        "Citation",
    ):
        lines += ["", f"## {section}", "", "To be written."]
    return "\n".join(lines) + "\n"


def _validate(model, directory: pathlib.Path, sample_input) -> None:
    reloaded = _load(str(directory), True, None, {}, task=_is_task(model))
    if sample_input is not None:
        # Outputs may be a dict (one entry per target): compare leaf by leaf.
        expected = keras.tree.flatten(model.predict(sample_input, verbose=0))
        actual = keras.tree.flatten(reloaded.predict(sample_input, verbose=0))
        for mine, theirs in zip(expected, actual, strict=True):
            mine, theirs = np.asarray(mine), np.asarray(theirs)
            if not np.allclose(theirs, mine, atol=1e-5):
                raise PresetError(
                    f"The preset written to {directory} does not reproduce the "
                    f"model: max |difference| {np.abs(theirs - mine).max():.3g}."
                )
        return
    for mine, theirs in zip(model.weights, reloaded.weights, strict=True):
        if not np.array_equal(np.asarray(mine), np.asarray(theirs)):
            raise PresetError(
                f"The preset written to {directory} does not reload weight "
                f"{mine.path} unchanged."
            )


def _is_task(model) -> bool:
    return isinstance(model, _keras_hub().models.Task)


def upload_preset(handle: str, directory: str | os.PathLike) -> None:
    """Upload a preset folder to a model hub with keras-hub's uploader.

    The handle is ``hf://org/name`` or ``kaggle://org/model/keras/variant``
    (``pip install "keras-sphere[hub]"``; needs network access and the hub's
    credentials).

    The folder is checked first: it must load (architecture), carry a model card,
    and its weights must match the sha256 in its metadata.
    """
    directory = pathlib.Path(directory)
    if _scheme(handle) not in _SCHEMES:
        raise PresetError(
            f"upload_preset needs an hf:// or kaggle:// handle. Received: {handle!r}"
        )
    resolve(str(directory))
    for required in (CONFIG_FILE, METADATA_FILE, CARD_FILE, WEIGHT_FILES[0]):
        if not (directory / required).exists():
            raise PresetError(
                f"{directory} has no {required}: write presets with save_preset."
            )
    _check_weights(str(directory), str(directory), {})
    _load(str(directory), False, None, {}, task=True)
    try:
        keras_hub = _keras_hub()
    except ImportError as error:
        raise ImportError(
            "upload_preset needs keras-hub and the hub clients: "
            "pip install 'keras-sphere[hub]'"
        ) from error
    # keras-hub uploads the whole folder: copy only the preset files.
    with tempfile.TemporaryDirectory() as staging:
        for path in directory.iterdir():
            if path.name in (
                CONFIG_FILE,
                TASK_CONFIG_FILE,
                METADATA_FILE,
                CARD_FILE,
                *WEIGHT_FILES,
            ):
                shutil.copy2(path, staging)
        keras_hub.upload_preset(handle, staging)
