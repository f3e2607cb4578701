"""Data-parallel training with `keras.distribution`, and batches that fit the devices.

`data_parallel()` replicates every variable (weights, moving statistics and the SHT
tables of `keras_sphere.layers`, which are layer state) on each device and shards every
batch along its first axis. Under JAX this is one GSPMD program: batch statistics such
as those of `SpectralBatchNorm` are means over the global batch, not per device, so
training matches single-device training up to float32 reduction order.

Two rules (``keras-and-zoo.md`` section 6, both reproduced failures):

1. Create or load the model *after* `data_parallel()` (or inside
   `data_parallel_scope()`); a model built before holds single-device variables and
   `fit` fails with "Received incompatible devices for jitted computation".
2. Every batch, the last one too, must have a size divisible by the number of devices
   on the batch axis (`batch_device_count()`), in `fit`, `evaluate` and `predict`.
   `divisible_batches` trims or pads a data set so that every batch is full; padded
   examples carry sample weight 0. `predict` pads the last batch and strips the
   padding from the predictions (keras-team/keras issue #21167). A plain
   `model.predict` that fails on such a batch (`IndivisibleError`) leaves the model's
   variables purged in Keras 3.15, so the model must be rebuilt or reloaded.

Data sets here are NumPy arrays, or tuples, lists or dicts of them ("nests"), all with
the examples on axis 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from collections.abc import Sequence

import keras
import numpy as np

__all__ = [
    "batch_device_count",
    "check_divisible",
    "data_parallel",
    "data_parallel_scope",
    "divisible_batches",
    "drop_to_multiple",
    "pad_to_multiple",
    "predict",
]

_REMAINDERS = ("drop", "pad")


# -- distributions ---------------------------------------------------------------------


def data_parallel(
    devices: Sequence[str | int] | None = None,
) -> keras.distribution.DataParallel:
    """Set, and return, a data-parallel distribution over the given devices.

    Variables are replicated on every device and each batch is split along axis 0 into
    one equal shard per device. Create or load models after this call.

    Args:
        devices: None for every device of `keras.distribution.list_devices()` (all
            TPU cores or GPUs, else the CPU devices); or a list of device names such
            as ``["gpu:0", "gpu:1"]``, or of indices into `list_devices()`.

    Returns:
        The `keras.distribution.DataParallel` now set as the global distribution.

    Raises:
        ValueError: for an empty list, an unknown device or a repeated device.
        TypeError: if `devices` is not a list of strings or integers.

    Example:
        >>> distribution = data_parallel()  # doctest: +SKIP
        >>> model = build_model()  # after: replicated variables  # doctest: +SKIP
        >>> model.fit(x, y, batch_size=8 * batch_device_count())  # doctest: +SKIP
    """
    distribution = _make_data_parallel(devices)
    keras.distribution.set_distribution(distribution)
    return distribution


@contextlib.contextmanager
def data_parallel_scope(
    devices: Sequence[str | int] | None = None,
) -> Iterator[keras.distribution.DataParallel]:
    """Context manager form of `data_parallel`; restores the previous distribution.

    Args:
        devices: as in `data_parallel`.

    Yields:
        The `keras.distribution.DataParallel` in force inside the block.

    Example:
        >>> with data_parallel_scope() as distribution:  # doctest: +SKIP
        ...     model = build_model()
        ...     model.fit(x, y, batch_size=8 * batch_device_count(distribution))
    """
    previous = keras.distribution.distribution()
    distribution = _make_data_parallel(devices)
    keras.distribution.set_distribution(distribution)
    try:
        yield distribution
    finally:
        keras.distribution.set_distribution(previous)


def _make_data_parallel(devices) -> keras.distribution.DataParallel:
    resolved = _resolve_devices(devices)
    return keras.distribution.DataParallel(devices=resolved)


def _resolve_devices(devices) -> list[str]:
    """Device names ("cpu:0", "gpu:3", ...) for `devices` (see `data_parallel`)."""
    default = keras.distribution.list_devices()
    if devices is None:
        return list(default)
    if isinstance(devices, str | int) or not isinstance(devices, Sequence):
        raise TypeError(
            "devices must be None or a list of device names or indices, e.g. "
            f'["gpu:0", "gpu:1"] or [0, 1]. Received: devices={devices!r}'
        )
    if not devices:
        raise ValueError(
            "devices is empty. Pass None to use every device, or a non-empty list "
            f"drawn from {default}."
        )
    resolved = [_resolve_device(device, default) for device in devices]
    if len(set(resolved)) != len(resolved):
        raise ValueError(
            f"devices lists a device twice: {resolved}. Each device may appear "
            f"once. Received: devices={devices!r}"
        )
    return resolved


def _resolve_device(device, default: list[str]) -> str:
    if isinstance(device, bool) or not isinstance(device, str | int | np.integer):
        raise TypeError(
            "Each device must be a name such as 'gpu:0' or an index into "
            f"keras.distribution.list_devices() = {default}. Received: {device!r}"
        )
    if not isinstance(device, str):
        if not 0 <= int(device) < len(default):
            raise ValueError(
                f"Device index {device} is out of range: there are {len(default)} "
                f"devices, {default}."
            )
        return default[int(device)]
    name = device.strip().lower()
    kind = name.split(":")[0]
    try:
        available = keras.distribution.list_devices(kind)
    except RuntimeError:
        available = []
    if name not in available:
        raise ValueError(
            f"Unknown device {device!r}. Available devices: {default}"
            + (f" (and {available})" if available and available != default else "")
            + "."
        )
    return name


def batch_device_count(distribution=None) -> int:
    """The number of devices a batch is split over (the batch axis of the mesh).

    Args:
        distribution: a `keras.distribution.Distribution`; default the global one.

    Returns:
        1 without a distribution (or when the data is not sharded), else the size of
        the mesh axis named by `distribution.batch_dim_name`.
    """
    if distribution is None:
        distribution = keras.distribution.distribution()
    if distribution is None or distribution.batch_dim_name is None:
        return 1
    mesh = distribution.device_mesh
    return int(mesh.shape[list(mesh.axis_names).index(distribution.batch_dim_name)])


# -- batches ---------------------------------------------------------------------------


def check_divisible(batch_size: int, n_devices: int | None = None) -> None:
    """Raise a ValueError unless `batch_size` splits evenly over the devices.

    Args:
        batch_size: global batch size (all devices together).
        n_devices: devices on the batch axis; default `batch_device_count()`.

    Raises:
        ValueError: if batch_size < 1 or batch_size % n_devices != 0; the message
            names the nearest valid batch sizes.
    """
    if n_devices is None:
        n_devices = batch_device_count()
    batch_size, n_devices = int(batch_size), int(n_devices)
    if n_devices < 1:
        raise ValueError(f"n_devices must be >= 1. Received: n_devices={n_devices}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    if batch_size % n_devices:
        below = batch_size // n_devices * n_devices
        above = below + n_devices
        nearest = f"{below} or {above}" if below else f"{above}"
        raise ValueError(
            f"batch_size={batch_size} does not split evenly over the {n_devices} "
            f"devices of the distribution: each batch is sharded along axis 0, so "
            f"its size must be a multiple of {n_devices}. Use batch_size={nearest} "
            f"(per-device batch size times {n_devices})."
        )


def _n_examples(data) -> int:
    """The common size of axis 0 of every array in `data`."""
    leaves = keras.tree.flatten(data)
    if not leaves:
        raise ValueError("data holds no arrays.")
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in leaves}
    if len(sizes) != 1 or -1 in sizes:
        shapes = [np.shape(leaf) for leaf in leaves]
        raise ValueError(
            "Every array in data must hold the examples on axis 0, with the same "
            f"number of examples. Received shapes {shapes}."
        )
    return sizes.pop()


def _check_multiple(multiple: int) -> int:
    multiple = int(multiple)
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1. Received: multiple={multiple}")
    return multiple


def pad_to_multiple(data, multiple: int):
    """Append zero examples so that the number of examples is a multiple.

    Args:
        data: an array, or a nest (tuple, list, dict) of arrays, of shape
            (n_examples, ...) each.
        multiple: the example count to round up to a multiple of, e.g. the batch
            size (every batch full) or the device count (every batch divisible).

    Returns:
        (padded, sample_weight): `data` with n_padded = ceil(n / multiple) * multiple
        examples, the new ones all zeros of each array's dtype; and float32
        sample_weight of shape (n_padded,), 1 for real examples and 0 for padding.
        Pass it as `sample_weight` to `fit`/`evaluate` (multiplied by any weights
        you already have) and as the per-example `mask` of `SpectralBatchNorm`,
        `SphericalResBlock` and `InvariantReadout` so that padding stays out of
        batch statistics. Keras' default loss reduction divides by the batch size,
        padding included; a loss built with reduction="mean_with_sample_weight"
        averages over the real examples only.

    Raises:
        ValueError: if multiple < 1 or the arrays disagree on the number of examples.
    """
    multiple = _check_multiple(multiple)
    n_examples = _n_examples(data)
    n_padded = -(-n_examples // multiple) * multiple
    extra = n_padded - n_examples

    def pad(array):
        array = np.asarray(array)
        zeros = np.zeros((extra, *array.shape[1:]), array.dtype)
        return np.concatenate([array, zeros], axis=0)

    sample_weight = np.zeros((n_padded,), np.float32)
    sample_weight[:n_examples] = 1.0
    return keras.tree.map_structure(pad, data), sample_weight


def drop_to_multiple(data, multiple: int):
    """Drop the last examples so that the number of examples is a multiple.

    Args:
        data: an array, or a nest of arrays, of shape (n_examples, ...) each.
        multiple: the example count to round down to a multiple of.

    Returns:
        `data` with floor(n / multiple) * multiple examples (the first ones).

    Raises:
        ValueError: if multiple < 1, the arrays disagree on the number of examples,
            or there are fewer than `multiple` examples (none would remain).
    """
    multiple = _check_multiple(multiple)
    n_examples = _n_examples(data)
    n_kept = n_examples // multiple * multiple
    if n_kept == 0:
        raise ValueError(
            f"Dropping to a multiple of {multiple} would leave no examples: there are "
            f"only {n_examples}. Pad instead (pad_to_multiple), or use a smaller "
            "batch size."
        )
    return keras.tree.map_structure(lambda array: np.asarray(array)[:n_kept], data)


def divisible_batches(
    data,
    batch_size: int,
    *,
    remainder: str | None = None,
    n_devices: int | None = None,
):
    """Make every batch of `data` full, hence divisible by the device count.

    Args:
        data: an array, or a nest of arrays, of shape (n_examples, ...) each.
        batch_size: global batch size; must be a multiple of `n_devices`.
        remainder: what to do when n_examples is not a multiple of `batch_size`:
            "drop" the last n_examples % batch_size examples, or "pad" with zero
            examples of sample weight 0 (then mask them out of batch statistics
            too, see `pad_to_multiple`). None raises a ValueError naming both.
        n_devices: devices on the batch axis; default `batch_device_count()`.

    Returns:
        (data, sample_weight): the trimmed or padded data and a float32 vector of
        shape (n_examples',) holding 1 for real examples and 0 for padding.

    Raises:
        ValueError: if batch_size is not a multiple of n_devices, if `remainder` is
            not one of None, "drop", "pad", or if there is a remainder and
            `remainder` is None.

    Example:
        >>> fields, labels = np.zeros((19, 8, 8, 1, 2)), np.zeros((19,))
        >>> (fields, labels), weight = divisible_batches(
        ...     (fields, labels), 8, remainder="pad", n_devices=8
        ... )
        >>> fields.shape, float(weight.sum())
        ((24, 8, 8, 1, 2), 19.0)
    """
    if remainder is not None and remainder not in _REMAINDERS:
        raise ValueError(
            "remainder must be None, 'drop' or 'pad'. "
            f"Received: remainder={remainder!r}"
        )
    check_divisible(batch_size, n_devices)
    n_examples = _n_examples(data)
    left_over = n_examples % int(batch_size)
    if left_over == 0:
        return data, np.ones((n_examples,), np.float32)
    if remainder is None:
        raise ValueError(
            f"{n_examples} examples do not fill batches of {batch_size}: the last "
            f"batch would hold {left_over}, and every batch must split evenly over "
            "the devices. Pass remainder='drop' to drop those examples or "
            "remainder='pad' to pad with zero-weight examples."
        )
    if remainder == "drop":
        data = drop_to_multiple(data, batch_size)
        return data, np.ones((_n_examples(data),), np.float32)
    return pad_to_multiple(data, batch_size)


def predict(model: keras.Model, x, *, batch_size: int = 32, **predict_kwargs):
    """`model.predict` for any number of examples under a distribution.

    Pads `x` with zero examples to a multiple of `batch_size` (so that every batch,
    the last one too, splits over the devices, and one compiled shape serves every
    batch), predicts, and strips the padding. Inference mode keeps examples
    independent, so the padding does not change the other predictions.

    Args:
        model: a Keras model, created or loaded under the current distribution.
        x: an array, or a nest of arrays, of shape (n_examples, ...) each.
        batch_size: global batch size; a multiple of `batch_device_count()`.
        **predict_kwargs: passed on to `model.predict` (e.g. verbose=0).

    Returns:
        The predictions for the n_examples real examples: the structure
        `model.predict` returns, each array of shape (n_examples, ...).

    Raises:
        ValueError: if batch_size is not a multiple of the device count.
    """
    check_divisible(batch_size)
    n_examples = _n_examples(x)
    padded, _ = pad_to_multiple(x, batch_size)
    outputs = model.predict(padded, batch_size=batch_size, **predict_kwargs)
    return keras.tree.map_structure(lambda array: array[:n_examples], outputs)
