"""Spin tuples, validity masks, input checks and the atomic build of the layers."""

from __future__ import annotations

import functools

import keras
import numpy as np

__all__ = [
    "atomic_build",
    "check_jax_backend",
    "normalize_spins",
    "read_float32",
    "real_block_matrix",
    "spin_zero_index",
    "validity_mask",
]


def check_jax_backend(layer_name: str) -> None:
    """Raise a clear error when Keras runs on a backend other than JAX."""
    backend = keras.backend.backend()
    if backend != "jax":
        raise RuntimeError(
            f"{layer_name} runs on the JAX backend only; Keras is using {backend!r}. "
            "Set KERAS_BACKEND=jax before Python starts."
        )


def normalize_spins(spins, name: str) -> tuple[int, ...]:
    """An ordered tuple of distinct integer spins, or a ValueError naming `name`."""
    if isinstance(spins, int | np.integer):
        spins = (spins,)
    try:
        if isinstance(spins, str):
            raise TypeError
        spins = tuple(int(s) for s in spins)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a tuple of integer spins, e.g. (0,) or (0, 1). "
            f"Received: {name}={spins!r}"
        ) from None
    if not spins or len(set(spins)) != len(spins):
        raise ValueError(
            f"{name} must list each spin once and not be empty. "
            f"Received: {name}={spins}"
        )
    return spins


def spin_zero_index(spins: tuple[int, ...], layer_name: str) -> int:
    """Index of spin 0 in `spins`; ValueError if spin 0 is absent."""
    if 0 not in spins:
        raise ValueError(
            f"{layer_name} needs a spin-0 entry (it centres, biases or reads out the "
            f"scalar part). Received spins={spins}."
        )
    return spins.index(0)


def validity_mask(ell_max: int, spins: tuple[int, ...]) -> np.ndarray:
    """1 where coefficient (ell, m) exists for each spin, else 0.

    Returns:
        float32, shape (ell_max + 1, 2 ell_max + 1, n_spins, 1): ell >= max(|m|, |s|).
    """
    ell = np.arange(ell_max + 1)[:, None, None]
    m = np.arange(-ell_max, ell_max + 1)[None, :, None]
    s = np.abs(np.asarray(spins))[None, None, :]
    return ((np.abs(m) <= ell) & (ell >= s)).astype(np.float32)[..., None]


def fix_input_shape(layer, input_shape) -> None:
    """Make Keras reject later inputs of another grid, bandlimit, spin or channel count.

    Layers hold grid-dependent state (tables, quadrature weights, kernels per degree)
    built for the first input; a different grid must fail loudly, never be resampled.
    Keras then raises "Input 0 of layer ... is incompatible with the layer: expected
    shape=(None, n_lat, n_lon, S, C), found shape=...".
    """
    layer.input_spec = keras.InputSpec(shape=(None, *tuple(input_shape)[1:]))


def atomic_build(build):
    """Decorate a layer's ``build`` so that a build that raises leaves no trace.

    A build creates state step by step: the input spec (`fix_input_shape`), weights,
    transform tables, sub-layers built in turn. If a later step raises (a shape the
    layer cannot take, a table too large for memory, an interrupt), the layer and
    its sub-layers are put back as they were: no input spec pinned to the rejected
    shape, no half set of weights that a second build would duplicate. The next
    call builds afresh.
    """

    @functools.wraps(build)
    def build_or_undo(layer, *args, **kwargs):
        saved = [_build_state(sublayer) for sublayer in layer._flatten_layers()]
        try:
            build(layer, *args, **kwargs)
        except BaseException:
            for state in saved:
                _restore_build_state(*state)
            raise

    return build_or_undo


def _build_state(layer):
    """What a build may change on `layer` (Keras' tracker stores and flags)."""
    tracker = layer._tracker
    stores = {
        name: (list(values), set(tracker.stored_ids[name]))
        for name, (_, values) in tracker.config.items()
    }
    flags = {
        name: getattr(layer, name, None)
        for name in ("built", "input_spec", "_build_shapes_dict")
    }
    return layer, stores, tracker.locked, flags


def _restore_build_state(layer, stores, locked, flags) -> None:
    tracker = layer._tracker
    for name, (values, ids) in stores.items():
        tracker.config[name][1][:] = values  # in place: the layer holds these lists
        tracker.stored_ids[name] = ids
    tracker.locked = locked
    for name, value in flags.items():
        setattr(layer, name, value)


def read_float32(variable):
    """A weight's value in float32 (weights may be stored in bfloat16).

    Returns:
        float32 array of the weight's shape.
    """
    import jax.numpy as jnp

    return jnp.asarray(variable.value, jnp.float32)


def real_block_matrix(real, imag):
    """The complex matrix W = real + i imag as a real matrix [[Wr, Wi], [-Wi, Wr]].

    [Re x, Im x] [[Wr, Wi], [-Wi, Wr]] = [Re (x W), Im (x W)], so a complex product
    runs as one real GEMM (XLA's complex products were measured 1.5-3x slower
    here, mostly in the transposes of their backward pass).

    Args:
        real: float32 (..., K, D).
        imag: float32, same shape.

    Returns:
        float32 (..., 2 K, 2 D).
    """
    import jax.numpy as jnp

    return jnp.concatenate(
        [
            jnp.concatenate([real, imag], axis=-1),
            jnp.concatenate([-imag, real], axis=-1),
        ],
        axis=-2,
    )
