"""Spin tuples, validity masks and input checks shared by the layers."""

from __future__ import annotations

import keras
import numpy as np

__all__ = [
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
