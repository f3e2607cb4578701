import os
import subprocess
import sys

import pytest

import keras_sphere
import keras_sphere.sphere

EXPECTED_SPHERE_NAMES = {
    "GaussianGrid",
    "Grid",
    "HealpixGrid",
    "SHTPlan",
    "analyse",
    "clear_cache",
    "clenshaw_curtis_weights",
    "isht",
    "pad",
    "regrid",
    "rotate_coefficients",
    "rotate_field",
    "sht",
    "sht_plan",
    "spin_harmonics",
    "synthesise",
    "truncate",
    "wigner_d",
    "wigner_delta",
}


EXPECTED_LAYER_NAMES = {
    "InvariantReadout",
    "MagnitudeNonlinearity",
    "PhaseCollapse",
    "ScatteringLayer",
    "SpectralBatchNorm",
    "SphericalBatchNorm",
    "SphericalDownsampling",
    "SphericalMean",
    "SphericalPooling",
    "SphericalResBlock",
    "SphericalUpsampling",
    "SpinSphericalConv",
}
# Public functions of keras_sphere.layers (not layers, so not registered).
EXPECTED_LAYER_FUNCTIONS = {"feature_statistics", "scattering_features"}


def public_names(module):
    return {
        name
        for name in vars(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), type(os))
    }


def run_python(code, **env):
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment
    )


def test_public_names_are_deliberate():
    assert public_names(keras_sphere.sphere) == EXPECTED_SPHERE_NAMES
    expected = EXPECTED_LAYER_NAMES | EXPECTED_LAYER_FUNCTIONS
    assert public_names(keras_sphere.layers) == expected


def test_every_layer_is_registered_for_loading():
    import keras

    for name in EXPECTED_LAYER_NAMES:
        cls = keras.saving.get_registered_object(f"keras_sphere>{name}")
        assert cls is getattr(keras_sphere.layers, name)


def test_import_does_not_load_tensorflow():
    result = run_python(
        "import sys, keras_sphere, keras_sphere.sphere; "
        "print('tensorflow' in sys.modules, 'keras_hub' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_backend_is_selected_for_the_user():
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import keras_sphere, keras; print(keras.backend.backend())",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "jax"


def test_other_backend_gives_a_clear_error():
    result = run_python("import keras_sphere", KERAS_BACKEND="torch")
    assert result.returncode != 0
    assert "needs the JAX backend" in result.stderr
    assert "KERAS_BACKEND=jax" in result.stderr


# Lines TensorFlow's C++ libraries print when they load and first look for GPUs.
TENSORFLOW_STARTUP_LINES = (
    "absl::InitializeLog",
    "oneDNN custom operations",
    "Could not find cuda drivers",
    "cuInit",
    "cpu_feature_guard",
)


def test_models_import_without_tensorflow_startup_logs():
    # keras-hub imports TensorFlow; running a TensorFlow op afterwards is when it
    # first looks for GPUs (the cuInit line on machines without a driver).
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, keras_sphere, keras_sphere.models; "
            "print('tensorflow' in sys.modules); "
            "import tensorflow as tf; print(int(tf.constant(1) + 1))",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    if result.stdout.split()[0] == "False":
        pytest.skip("TensorFlow is not installed: no start-up logs to hide")
    assert result.stdout.split() == ["True", "2"]
    shown = [line for line in TENSORFLOW_STARTUP_LINES if line in result.stderr]
    assert not shown, result.stderr


def test_tensorflow_logs_stay_when_asked_for():
    # TF_CPP_MIN_LOG_LEVEL=0 asks for every log: TensorFlow is then not imported
    # early under a filter, and its lines reach the terminal as usual.
    result = run_python(
        "import sys, keras_sphere._backend as backend; "
        "backend._stderr_without = None; backend.import_tensorflow_quietly(); "
        "print('tensorflow' in sys.modules)",
        TF_CPP_MIN_LOG_LEVEL="0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]


def test_stderr_filter_drops_startup_lines_only(capfd):
    from keras_sphere._backend import _STARTUP_LOG
    from keras_sphere._backend import _stderr_without

    written = (
        b"WARNING: All log messages before absl::InitializeLog() is called are "
        b"written to STDERR\n"
        b"I0000 00:00:1796307390.298851   13358 port.cc:153] oneDNN custom "
        b"operations are on.\n"
        b"a warning of the user's own\n"
        b"E0000 00:00:1796308513.957802   24314 cuda_platform.cc:52] failed call "
        b"to cuInit: INTERNAL\n"
        b"E0000 00:00:1796308513.957802   24314 other.cc:1] a real error\n"
    )
    with _stderr_without(_STARTUP_LOG):
        os.write(2, written)
    assert capfd.readouterr().err == (
        "a warning of the user's own\n"
        "E0000 00:00:1796308513.957802   24314 other.cc:1] a real error\n"
    )
