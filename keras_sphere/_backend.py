"""Backend selection: keras-sphere runs on Keras 3 with the JAX backend."""

from __future__ import annotations

import os
import sys


def select_jax_backend() -> None:
    """Choose the JAX backend for Keras, or raise if another one is already chosen.

    Keras reads ``KERAS_BACKEND`` when it is first imported, so keras-sphere sets it to
    "jax" when the user has not chosen a backend and Keras is not loaded yet.

    Raises:
        ImportError: if ``KERAS_BACKEND`` names another backend, or Keras was already
            imported with one.
    """
    requested = os.environ.get("KERAS_BACKEND")
    if "keras" in sys.modules:
        import keras

        requested = keras.backend.backend()
    elif requested is None:
        os.environ["KERAS_BACKEND"] = "jax"
        return
    if requested != "jax":
        raise ImportError(
            f"keras-sphere needs the JAX backend of Keras 3, but the backend is "
            f"{requested!r}. Set the environment variable KERAS_BACKEND=jax before "
            "Python starts (or before importing keras), e.g. `KERAS_BACKEND=jax python "
            "train.py`, or import keras_sphere before keras."
        )
