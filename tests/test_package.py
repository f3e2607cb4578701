import os
import subprocess
import sys

import keras_sphere
import keras_sphere.sphere

EXPECTED_SPHERE_NAMES = {
    "Grid",
    "SHTPlan",
    "clear_cache",
    "clenshaw_curtis_weights",
    "isht",
    "pad",
    "rotate_coefficients",
    "rotate_field",
    "sht",
    "sht_plan",
    "spin_harmonics",
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
