"""Backend settings: Keras 3 with the JAX backend, and a quiet TensorFlow import."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile


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


# Start-up lines of TensorFlow's C++ libraries, written straight to file descriptor 2
# while `import tensorflow` loads them: absl's notice that logging is not initialised,
# every INFO and WARNING line (oneDNN, "Could not find cuda drivers", CPU features
# and the line after it) and the ERROR lines of a GPU build without a GPU.
_STARTUP_LOG = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\)"
    rb"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    rb"|E\d{4} .*(cuInit|Unable to register cu\w+ factory)"
    rb"|To enable the following instructions: "
)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow, if installed, without its start-up logs on the terminal.

    keras-hub imports TensorFlow, whose C++ libraries print several lines when
    they load or first look for GPUs (oneDNN, CUDA drivers, cuInit) that say
    nothing about keras-sphere models. ``TF_CPP_MIN_LOG_LEVEL`` does not hide them
    (TensorFlow 2.21 writes them through absl before its logging is initialised,
    and printed them at levels 1, 2 and 3 alike), so the import runs with file
    descriptor 2 captured and every captured line that is not one of these
    start-up lines is written back afterwards. Call this before the first import
    of keras-hub or TensorFlow; it does nothing once TensorFlow is loaded, or when
    the user asked for every log with ``TF_CPP_MIN_LOG_LEVEL=0``.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        return
    with _stderr_without(_STARTUP_LOG):
        try:
            import tensorflow
        except ImportError:
            return  # keras-hub works without TensorFlow
        # TensorFlow looks for GPUs (cuInit) the first time it runs anything, such
        # as keras-hub's tf.data input pipelines; looking now keeps that line here.
        # Listing devices does not start the runtime or take GPU memory.
        with contextlib.suppress(Exception):
            tensorflow.config.list_physical_devices()


@contextlib.contextmanager
def _stderr_without(pattern: re.Pattern):
    """Capture file descriptor 2, then write back the lines `pattern` does not match.

    Output of C libraries bypasses `sys.stderr`, so the descriptor itself is
    redirected (to a temporary file); nothing else is dropped, only delayed.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no usable stderr: nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().splitlines(keepends=True)
                if not pattern.match(line)
            ]
            if kept:
                os.write(2, b"".join(kept))
