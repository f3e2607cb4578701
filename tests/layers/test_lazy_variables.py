"""LazyVariable: declared in build, drawn at first read, or given by an assignment."""

import keras
import numpy as np
import pytest

from keras_sphere.layers import SpinSphericalConv
from keras_sphere.layers.lazy_variables import LazyVariable
from keras_sphere.layers.lazy_variables import add_lazy_weight


def test_first_read_draws_what_an_eager_variable_draws():
    # An integer-seeded initializer gives the same values whenever it runs.
    initializer = keras.initializers.RandomNormal(stddev=0.5, seed=7)
    lazy = LazyVariable(initializer=initializer, shape=(3, 4), dtype="float32")
    assert not lazy.has_value
    eager = keras.Variable(initializer=initializer, shape=(3, 4), dtype="float32")
    np.testing.assert_array_equal(lazy.numpy(), eager.numpy())
    assert lazy.has_value


def test_an_assignment_before_any_read_never_draws():
    def refuse(shape, dtype=None):
        raise AssertionError("the initializer ran")

    lazy = LazyVariable(initializer=refuse, shape=(2,), dtype="float32")
    lazy.assign(np.array([1.0, 2.0], "float32"))
    np.testing.assert_array_equal(lazy.numpy(), [1.0, 2.0])


def test_a_fresh_layer_draws_its_kernel_once_with_the_usual_values():
    keras.utils.set_random_seed(3)
    conv = SpinSphericalConv(2, (0,), (0, 1))
    conv.build((None, 8, 8, 1, 3))
    assert isinstance(conv.kernel_real, LazyVariable)
    assert not conv.kernel_real.has_value
    drawn = conv.kernel_real.numpy()
    np.testing.assert_array_equal(conv.kernel_real.numpy(), drawn)  # not redrawn
    # What build drew eagerly before: the default initializer, seeded when made.
    keras.utils.set_random_seed(3)
    initializer = keras.initializers.RandomNormal(stddev=np.sqrt(1.0 / (2.0 * 3)))
    expected = np.asarray(initializer(conv.kernel_real.shape, dtype="float32"))
    np.testing.assert_array_equal(drawn, expected)


def test_symbolic_calls_draw_nothing_and_loading_overwrites_without_drawing(tmp_path):
    inputs = keras.Input((8, 8, 1, 1))
    conv = SpinSphericalConv(2, (0,), (0,))
    model = keras.Model(inputs, conv(inputs))
    assert not conv.kernel_real.has_value  # the functional build traced a placeholder
    path = tmp_path / "w.weights.h5"
    source = keras.Model(inputs, SpinSphericalConv(2, (0,), (0,))(inputs))
    source.save_weights(path)
    model.load_weights(path)
    for mine, theirs in zip(model.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_stateful_seeds_are_drawn_eagerly():
    # Draws from a SeedGenerator depend on their order: not deferred.
    layer = keras.layers.Layer()
    initializer = keras.initializers.RandomNormal(seed=keras.random.SeedGenerator(1))
    weight = add_lazy_weight(layer, shape=(2,), initializer=initializer, name="w")
    assert not isinstance(weight, LazyVariable)
    lazy = add_lazy_weight(layer, shape=(2,), initializer="zeros", name="z")
    assert isinstance(lazy, LazyVariable)
    assert [w.name for w in layer.weights] == ["w", "z"]


@pytest.mark.parametrize("trainable", [True, False])
def test_lazy_weights_are_tracked_like_others(trainable):
    layer = keras.layers.Layer()
    add_lazy_weight(
        layer, shape=(3,), initializer="ones", name="w", trainable=trainable
    )
    assert len(layer.trainable_weights) == int(trainable)
    assert len(layer.weights) == 1 and layer.weights[0].shape == (3,)
