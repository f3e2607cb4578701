"""CMBBackbone and CMBClassifier at small bandlimits: Keras contract, feature path."""

import copy

import keras
import numpy as np
import pytest

from keras_sphere.layers import feature_statistics
from keras_sphere.layers import scattering_features
from keras_sphere.models import CMBBackbone
from keras_sphere.models import CMBClassifier
from keras_sphere.models.cmb import feature_classifier
from keras_sphere.models.cmb import transfer_weights
from keras_sphere.sphere import Grid

ELL_MAX, J0 = 31, 2  # 64 x 64 maps, 11 scattering paths on an 8 x 8 grid
SMALL = {
    "ell_max": ELL_MAX,
    "J0": J0,
    "filters": (4, 6),
    "num_filter_params": (3, None),
}


def small_classifier(**kwargs):
    return CMBClassifier(CMBBackbone(**{**SMALL, **kwargs}))


def maps(rng, count=4):
    return (100.0 * rng.standard_normal((count, 64, 64))).astype("float32")


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    x = maps(rng, 6)
    model = small_classifier()
    features = np.asarray(scattering_features(x, J0, verbose=0))
    model.backbone.front.adapt_features(features)
    for weight in model.trainable_weights:
        weight.assign(0.3 * rng.standard_normal(weight.shape).astype("float32"))
    return model, x, features


def test_shapes_and_probabilities(fitted):
    model, x, _ = fitted
    probabilities = model.predict(x, verbose=0)
    assert probabilities.shape == (6, 2)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    assert model.backbone.output.shape == (None, 12)  # 2 x filters[-1]
    # The scattering front end is frozen: it has no trainable weights.
    assert not model.backbone.front.trainable_weights


def test_feature_paths_match_the_full_model(fitted):
    # Training on cached features must train the same function as the full model.
    model, x, features = fitted
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(
        model.feature_model().predict(features, verbose=0), expected, atol=1e-5
    )
    mean, std = feature_statistics(features, Grid(8, 8))
    np.testing.assert_allclose(mean, model.backbone.front.feature_mean.numpy(), 1e-5)
    np.testing.assert_allclose(std, model.backbone.front.feature_std.numpy(), 1e-5)
    standalone = feature_classifier(features.shape[1:], mean, std, (4, 6), (3, None))
    copied = transfer_weights(model, standalone)
    assert {"conv_0", "conv_1", "head_hidden", "predictions"} <= set(copied)
    np.testing.assert_allclose(
        standalone.predict(features, verbose=0), expected, atol=1e-5
    )


def test_invariant_to_grid_rolls(fitted):
    # Rolling by whole grid columns is an exact rotation about the polar axis, which
    # every layer commutes with (the scattering output grid is 8 x 8, so the roll
    # must be a multiple of 64 / 8 columns to stay on its grid): float32 rounding.
    model, x, _ = fitted
    rolled = np.roll(x, 16, axis=2)
    np.testing.assert_allclose(
        model.predict(rolled, verbose=0), model.predict(x, verbose=0), atol=1e-5
    )


def test_config_round_trip_and_fit(fitted, tmp_path):
    model, x, _ = fitted
    config = model.get_config()
    clone = CMBClassifier.from_config(copy.deepcopy(config))  # keras-hub mutates it
    assert clone.get_config() == config
    assert clone.count_params() == model.count_params()
    clone.compile()
    history = clone.fit(x, np.array([0, 1] * 3), epochs=2, batch_size=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_lowpass_variant_takes_maps_directly(rng):
    model = CMBClassifier(
        CMBBackbone(
            ell_max=15, filters=(4,), num_filter_params=(None,), scattering=False
        )
    )
    assert model.predict(maps(rng)[:, ::2, ::2], verbose=0).shape == (4, 2)
    assert isinstance(model.backbone.front, keras.layers.Rescaling)
    with pytest.raises(ValueError, match="scattering=True"):
        model.backbone.feature_model()


def test_bad_configurations():
    with pytest.raises(ValueError, match="one entry per block"):
        CMBBackbone(ell_max=ELL_MAX, J0=J0, filters=(4, 4), num_filter_params=(3,))
    with pytest.raises(ValueError, match="preprocessor"):
        CMBClassifier(CMBBackbone(**SMALL), preprocessor=object())


def test_predict_refuses_non_finite_maps_and_names_them(fitted):
    model, x, _ = fitted
    bad = x.copy()
    bad[1, 3, 4] = np.nan
    bad[4, 0, 0] = np.inf
    message = (
        r"maps has NaN or infinite values \(1 NaN and 1 infinite entries\) in 2 of "
        r"6 examples, at indices \[1, 4\] along axis 0\. Drop or repair"
    )
    with pytest.raises(ValueError, match=message):
        model.predict(bad, batch_size=2, verbose=0)
    with pytest.raises(ValueError, match=r"maps has NaN .* at indices \[1, 4\]"):
        model.predict({"maps": bad}, verbose=0)
    with pytest.raises(ValueError, match=r"at indices \[1, 4\]"):
        model.evaluate(bad, np.zeros(6), verbose=0)
    # batch_size and verbose still reach Keras: 3 batches of 2.
    assert model.predict(x, batch_size=2, verbose=0).shape == (6, 2)


def test_failed_calls_leave_the_classifier_usable(fitted, monkeypatch):
    # Keras' JAX trainer empties the variables before the first step and loses them
    # if that step raises (keras_sphere/models/_trainer_state.py): the classifier
    # puts them back, so the next call gives the same probabilities.
    model, x, _ = fitted
    expected = model.predict(x, verbose=0)
    weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
    wrong_grid = maps(np.random.default_rng(1), 2)[:, ::2, ::2]  # 32 x 32
    with pytest.raises(ValueError, match=r"expected shape=\(None, 64, 64\)"):
        model.predict(wrong_grid, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), expected)
    with pytest.raises(ValueError, match=r"expected shape=\(None, 64, 64\)"):
        model.fit(wrong_grid, np.array([0, 1]), verbose=0)
    for weight, value in zip(model.weights, weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), value)
    assert all(v._value is not None for v in model.optimizer.variables)
    # An error inside a transform, raised while the predict step is traced.
    from keras_sphere.layers.transform_state import TransformState

    original = TransformState.to_spectral

    def failing(*args, **kwargs):
        monkeypatch.setattr(TransformState, "to_spectral", original)
        raise RuntimeError("transform failed")

    monkeypatch.setattr(TransformState, "to_spectral", failing)
    model.make_predict_function(force=True)  # trace again, through the patch
    with pytest.raises(RuntimeError, match="transform failed"):
        model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), expected)
