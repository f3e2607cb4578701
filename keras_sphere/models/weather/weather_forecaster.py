"""`WeatherForecaster`: one 6 h step of a normalised atmosphere, and rollouts of it.

A `WeatherBackbone` predicts standardised 6 h differences Delta of a normalised state
x; the forecaster adds them back (``models.md`` section 2.4):

    next state = x + delta_scale * Delta(x),

with `delta_scale` the per-channel standard deviation of the normalised 6 h
differences (ones by default). `rollout` iterates the step; `fit` and `evaluate` take
targets (batch, steps, n_lat, n_lon, channels) and train or score a rollout of that
many steps, backpropagating through all of them (``jax.lax.scan`` over steps, each
step rematerialised in the backward pass with ``jax.checkpoint``, so memory grows
with the number of steps only by one state per step).

The default loss of `compile` is `RolloutMeanSquaredError` (``rollout_training.py``).
"""

from __future__ import annotations

import functools

import keras
import keras_hub
import numpy as np

from keras_sphere._checks import check_finite
from keras_sphere.models._trainer_state import restore_variables_on_error
from keras_sphere.models.weather.delta_step import AddScaledDifference
from keras_sphere.models.weather.delta_step import check_delta_scale
from keras_sphere.models.weather.rollout_training import RolloutMeanSquaredError
from keras_sphere.models.weather.weather_backbone import WeatherBackbone

__all__ = ["WeatherForecaster"]


@keras.saving.register_keras_serializable(package="keras_sphere")
class WeatherForecaster(keras_hub.models.Task):
    """Steps a normalised atmospheric state forward by 6 h; rolls out and trains.

    ``forecaster(state)`` and `predict` return the next state; `rollout` iterates
    it; `fit` and `evaluate` take targets of one or several steps (module docstring
    for the loss). NumPy arrays work with `compile`, `fit`, `evaluate` and
    `predict` (no keras-hub preprocessing pipeline runs); arrays are checked for
    their shape and for NaN or infinite values, and a call that fails leaves the
    weights in place.

    Args:
        backbone: a `WeatherBackbone`.
        delta_scale: per-channel standard deviation of the normalised 6 h
            differences (channels,), default ones (or the `normalization`'s
            ``delta_std``). u and v of a level must share one value (rotation
            equivariance).
        normalization: the training statistics
            (`keras_sphere.data.weather.Normalization` or its ``to_dict()``), kept
            in the config so that a saved or preset model carries them and
            `keras_sphere.weather.forecast` can work in physical units.
        preprocessor: unused (keras-hub signature); must be None.

    Input: float32 (batch, n_lat, n_lon, channels), the normalised state in the
    backbone's channel layout (scalars, u per level, v per level), north pole first.
    Output: float32, the same shape: the normalised state 6 h later.

    Example:
        >>> backbone = WeatherBackbone((16, 16), 2, 1, widths=(4, 8))
        >>> forecaster = WeatherForecaster(backbone, delta_scale=[0.1, 0.2, 0.3, 0.3])
        >>> forecaster.rollout(np.zeros((1, 16, 16, 4), "float32"), steps=3).shape
        (1, 3, 16, 16, 4)
    """

    backbone_cls = WeatherBackbone
    preprocessor_cls = None

    def __init__(
        self,
        backbone: WeatherBackbone,
        delta_scale=None,
        preprocessor=None,
        *,
        normalization=None,
        **kwargs,
    ):
        if preprocessor is not None:
            raise ValueError(
                "WeatherForecaster takes normalised states directly: preprocessor=None."
            )
        if not isinstance(backbone, self.backbone_cls):
            raise TypeError(
                f"backbone must be a {self.backbone_cls.__name__}. Received: "
                f"{type(backbone).__name__}"
            )
        normalization = _checked_normalization(normalization, backbone)
        if delta_scale is None and normalization is not None:
            delta_scale = normalization["delta_std"]
        delta_scale = check_delta_scale(
            delta_scale, backbone.num_scalar_channels, backbone.num_wind_levels
        )
        self.backbone = backbone
        self.preprocessor = None
        state = keras.Input((*backbone.grid_shape, backbone.channels), name="state")
        difference = backbone(state)
        next_state = AddScaledDifference(
            delta_scale, name="next_state", dtype=backbone.dtype_policy
        )([state, difference])
        # compile() (called by Task.__init__) reads these.
        self.delta_scale = delta_scale
        self.grid_shape = backbone.grid_shape
        super().__init__(inputs=state, outputs=next_state, **kwargs)
        self.delta_scale = delta_scale
        self.grid_shape = backbone.grid_shape
        self.normalization = normalization
        self._rollout_functions = {}

    @property
    def state_shape(self) -> tuple[int, int, int]:
        """(n_lat, n_lon, channels) of one state."""
        return (*self.backbone.grid_shape, self.backbone.channels)

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """Adam(1e-3) and `RolloutMeanSquaredError` by default, no metrics."""
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-3)
        if loss == "auto":
            loss = RolloutMeanSquaredError(self.delta_scale, self.grid_shape)
        if metrics == "auto":
            metrics = None
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        """Compile a loaded model as it was saved (optimizer, loss, metrics)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    # -- rollouts ----------------------------------------------------------------------

    def stateless_rollout(
        self,
        trainable_variables,
        non_trainable_variables,
        state,
        steps: int,
        training: bool = False,
    ):
        """`steps` forecast steps from `state`, without side effects (JAX).

        One ``jax.lax.scan`` over steps; each step of a longer rollout is
        ``jax.checkpoint``-ed, so a gradient through it keeps one state per step
        and recomputes the rest. Batch-norm statistics (in training) are carried
        from step to step; the transform tables are shared by all steps.

        Args:
            trainable_variables: values of `self.trainable_variables`.
            non_trainable_variables: values of `self.non_trainable_variables`.
            state: float32 (batch, n_lat, n_lon, channels).
            steps: number of 6 h steps (>= 1), a Python int.
            training: run the layers in training mode (batch statistics).

        Returns:
            (states, non_trainable_variables): float32
            (batch, steps, n_lat, n_lon, channels), the states after 1 .. steps
            steps; and the updated non-trainable values (moving statistics).
        """
        import jax
        import jax.numpy as jnp

        steps = _check_steps(steps)
        weights = {id(v) for v in self.non_trainable_weights}
        carried = [
            index
            for index, variable in enumerate(self.non_trainable_variables)
            if id(variable) in weights
        ]
        fixed = list(non_trainable_variables)

        def step(carry, _):
            current, statistics = carry
            values = list(fixed)
            for index, value in zip(carried, statistics, strict=True):
                values[index] = value
            following, values = self.stateless_call(
                trainable_variables, values, current, training=training
            )
            following = jnp.asarray(following, jnp.float32)
            return (following, [values[index] for index in carried]), following

        start = (jnp.asarray(state, jnp.float32), [fixed[index] for index in carried])
        # A single step saves nothing by recomputing itself: rematerialising it
        # only added a forward pass and its operations (weather_256 step and
        # compile: see benchmarks/README.md, issue 19).
        body = jax.checkpoint(step) if steps > 1 else step
        (_, statistics), states = jax.lax.scan(body, start, None, length=steps)
        for index, value in zip(carried, statistics, strict=True):
            fixed[index] = value
        return jnp.moveaxis(states, 0, 1), fixed  # [steps, b, ...] -> [b, steps, ...]

    def rollout(self, state, steps: int, *, training: bool = False):
        """Forecast `steps` 6 h steps from `state` by iterating the model.

        Compiled once per (steps, training) and reused; works inside traced
        functions too.

        Args:
            state: float (batch, n_lat, n_lon, channels), a normalised state.
            steps: number of 6 h steps (>= 1).
            training: training-mode layers; the batch norms' moving statistics are
                then updated once per step.

        Returns:
            float32 (batch, steps, n_lat, n_lon, channels): the states 6 h, 12 h,
            ... after `state` (a JAX array; ``np.asarray`` makes it NumPy).

        Raises:
            ValueError: wrong state shape, non-finite values, or steps < 1.
        """
        import jax

        steps = _check_steps(steps)
        if not isinstance(state, jax.core.Tracer):
            state = self._check_state(state, "state")
        trainable = [v.value for v in self.trainable_variables]
        non_trainable = [v.value for v in self.non_trainable_variables]
        key = (steps, bool(training))
        if key not in self._rollout_functions:
            self._rollout_functions[key] = jax.jit(
                functools.partial(
                    self.stateless_rollout, steps=steps, training=bool(training)
                )
            )
        states, non_trainable = self._rollout_functions[key](
            trainable, non_trainable, state
        )
        if training:
            weights = {id(v) for v in self.non_trainable_weights}
            for variable, value in zip(
                self.non_trainable_variables, non_trainable, strict=True
            ):
                if id(variable) in weights:
                    variable.assign(value)
        return states

    # -- training: the trainer's loss step, over a rollout ---------------------------

    def compute_loss_and_updates(
        self,
        trainable_variables,
        non_trainable_variables,
        metrics_variables,
        x,
        y,
        sample_weight,
        training=False,
        optimizer_variables=None,
    ):
        """Keras' JAX loss step with `y_pred` the rollout of `y`'s length.

        Targets (batch, steps, n_lat, n_lon, channels) are compared with a
        rollout of `steps` steps; targets (batch, n_lat, n_lon, channels) with one
        step. Otherwise as ``JAXTrainer.compute_loss_and_updates`` (Keras 3.15).
        """
        from keras import StatelessScope

        if y is None:
            raise ValueError(
                "WeatherForecaster trains on targets: pass y with shape (batch, "
                "steps, n_lat, n_lon, channels) (or one step without the steps axis)."
            )
        is_one_step = len(y.shape) == 4
        steps = 1 if is_one_step else int(y.shape[1])
        y_pred, non_trainable_variables = self.stateless_rollout(
            trainable_variables, non_trainable_variables, x, steps, training=training
        )
        if is_one_step:
            y_pred = y_pred[:, 0]
        loss, variables = self.stateless_compute_loss(
            trainable_variables,
            non_trainable_variables,
            metrics_variables,
            x=x,
            y=y,
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=training,
        )
        trainable_variables, non_trainable_variables, metrics_variables = variables
        unscaled_loss = loss
        if training and self.optimizer is not None:
            # Loss scaling of mixed precision, as in Keras' JAX trainer.
            mapping = list(
                zip(self.optimizer.variables, optimizer_variables, strict=True)
            )
            with StatelessScope(state_mapping=mapping):
                loss = self.optimizer.scale_loss(loss)
        return loss, (unscaled_loss, y_pred, non_trainable_variables, metrics_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kwargs):
        y_pred = _as_rollout_of(y, y_pred)
        return super().compute_loss(x, y, y_pred, sample_weight, **kwargs)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        y_pred = _as_rollout_of(y, y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    # -- entry points: checked arrays, no keras-hub preprocessing -------------------

    def _check_state(self, state, what: str):
        """float32 array of states (n, n_lat, n_lon, channels), checked."""
        values = np.asarray(state, np.float32)
        if values.ndim != 4 or values.shape[1:] != self.state_shape:
            raise ValueError(
                f"{what} must have shape (batch, {_listed(self.state_shape)}): "
                f"normalised states on the {self.grid_shape[0]} x "
                f"{self.grid_shape[1]} grid (north pole first) with "
                f"{self.backbone.num_scalar_channels} scalar channels, then "
                f"{self.backbone.num_wind_levels} of u and of v. Received shape "
                f"{values.shape}."
            )
        check_finite(values, what)
        return values

    def _check_arrays(self, x, y=None) -> None:
        """Check states and targets given as arrays (datasets pass unchecked)."""
        if _is_array(x):
            self._check_state(x, "x")
        if _is_array(y):
            values = np.asarray(y)
            if values.ndim not in (4, 5) or values.shape[-3:] != self.state_shape:
                raise ValueError(
                    "y must have shape (batch, steps, "
                    f"{_listed(self.state_shape)}) (the states after 1 .. "
                    "steps 6 h steps) or one step without the steps axis. Received "
                    f"shape {values.shape}."
                )
            check_finite(values, "y")

    # Without a preprocessor there is nothing for keras-hub's tf.data pipeline to
    # do: Keras' own loops run (they take NumPy arrays and PyDatasets), as in
    # QM9Regressor. A failed call keeps the weights (`restore_variables_on_error`).
    def fit(self, x=None, y=None, *args, **kwargs):
        """As `keras.Model.fit`; `y` holds the target states of a rollout."""
        self._check_arrays(x, y)
        with restore_variables_on_error(self, build_optimizer=True):
            return keras.Model.fit(self, x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """As `keras.Model.evaluate`; `y` holds the target states of a rollout."""
        self._check_arrays(x, y)
        with restore_variables_on_error(self):
            return keras.Model.evaluate(self, x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """The next state of each state, as `keras.Model.predict`."""
        self._check_arrays(x)
        with restore_variables_on_error(self):
            return keras.Model.predict(self, x, *args, **kwargs)

    train_on_batch = keras.Model.train_on_batch
    test_on_batch = keras.Model.test_on_batch
    predict_on_batch = keras.Model.predict_on_batch

    def get_config(self):
        config = super().get_config()
        config.update(
            {"delta_scale": list(self.delta_scale), "normalization": self.normalization}
        )
        return config


def _checked_normalization(normalization, backbone) -> dict | None:
    """The statistics as a JSON-ready dict, checked against the backbone's channels."""
    if normalization is None:
        return None
    from keras_sphere.data.weather.normalization import Normalization

    if isinstance(normalization, dict):
        normalization = Normalization.from_dict(normalization)
    if not isinstance(normalization, Normalization):
        raise TypeError(
            "normalization must be a keras_sphere.data.weather.Normalization or its "
            f"to_dict(). Received: {type(normalization).__name__}"
        )
    layout = normalization.layout
    if (layout.num_scalar_channels, layout.num_wind_levels) != (
        backbone.num_scalar_channels,
        backbone.num_wind_levels,
    ):
        raise ValueError(
            f"normalization has {layout.num_scalar_channels} scalar channels and "
            f"{layout.num_wind_levels} wind levels; the backbone "
            f"{backbone.num_scalar_channels} and {backbone.num_wind_levels}."
        )
    return normalization.to_dict()


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1. Received: steps={steps!r}")
    return int(steps)


def _listed(shape) -> str:
    return ", ".join(str(n) for n in shape)


def _is_array(value) -> bool:
    return value is not None and all(
        hasattr(value, attribute) for attribute in ("shape", "__array__")
    )


def _as_rollout_of(y, y_pred):
    """`y_pred` with the steps axis of `y` where Keras traces a one-step prediction.

    Keras builds the loss and metrics once, symbolically, from the model's own
    output (one step) and the targets (`Trainer._symbolic_build`); the real steps
    always compare a rollout of y's length (`compute_loss_and_updates`). Only in
    that symbolic build is the one-step prediction repeated along the steps axis.
    """
    if y is None or y_pred is None or len(y_pred.shape) == len(y.shape):
        return y_pred
    from keras import ops
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope

    if len(y_pred.shape) == len(y.shape) - 1 and in_symbolic_scope():
        return ops.broadcast_to(ops.expand_dims(y_pred, 1), ops.shape(y))
    raise ValueError(
        f"Predictions of shape {tuple(y_pred.shape)} do not match targets of shape "
        f"{tuple(y.shape)}; WeatherForecaster compares targets (batch, steps, ...) "
        "with a rollout of as many steps (see compute_loss_and_updates)."
    )
