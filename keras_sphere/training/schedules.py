"""Learning-rate schedules: linear warm-up, then cosine decay, scaled with the batch.

The reference QM9 recipe (google-research/spherical-cnn at commit 5d351d3, as read for
``models.md`` section 1.7) trains with Adam at 1e-4 per global batch of 32, scaled
linearly with the global batch size, one epoch of linear warm-up from 0, then cosine
decay to 0 at the last step:

    lr(step) = peak * min(1, step / warmup_steps)
                    * (1 + cos(pi * clip((step - warmup_steps)
                                         / (total_steps - warmup_steps), 0, 1))) / 2,
    peak = base_learning_rate * global_batch_size / reference_batch_size.

Keras evaluates the schedule at `optimizer.iterations` before each update, so the
first update (step 0) uses lr = 0 when there is a warm-up, as in optax.
"""

from __future__ import annotations

import math

import keras

__all__ = [
    "QM9_REFERENCE_BATCH_SIZE",
    "QM9_REFERENCE_LEARNING_RATE",
    "QM9_REFERENCE_WARMUP_EPOCHS",
    "WarmupCosineDecay",
    "qm9_reference_schedule",
]

# The reference QM9 recipe (models.md section 1.7, read in google-research/spherical-cnn
# at commit 5d351d3): 1e-4 per global batch of 32 molecules, one warm-up epoch.
QM9_REFERENCE_LEARNING_RATE = 1e-4
QM9_REFERENCE_BATCH_SIZE = 32
QM9_REFERENCE_WARMUP_EPOCHS = 1


@keras.saving.register_keras_serializable(package="keras_sphere")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to a peak, then cosine decay to 0.

    With peak = base_learning_rate * global_batch_size / reference_batch_size (or
    base_learning_rate when no batch sizes are given):

        lr(step) = peak * min(1, step / warmup_steps)
                   * (1 + cos(pi * clip((step - warmup_steps)
                                        / (total_steps - warmup_steps), 0, 1))) / 2

    so lr(0) = 0, lr(warmup_steps) = peak, lr(total_steps) = 0 and lr stays 0 after
    total_steps, unless `restarts` follow: each (steps, scale) is a further cosine
    from scale * peak to 0 over `steps` steps, without warm-up (warm restarts, as
    in SGDR and Keras' `CosineDecayRestarts`): a run whose schedule has ended
    trains on with its optimizer state, and a run from scratch with the same
    restarts reproduces it. `end_step` is where the last cycle ends.

    Unlike `keras.optimizers.schedules.CosineDecay` (warm-up from an initial rate
    to `warmup_target`, decay over `decay_steps` after the warm-up), the warm-up
    starts at 0, `total_steps` counts the warm-up, and the peak scales with the
    global batch size, as in the reference recipe (module docstring).

    Args:
        base_learning_rate: peak rate at `reference_batch_size`, > 0.
        total_steps: optimizer steps of the first cycle, warm-up included, >= 1.
        warmup_steps: steps of linear warm-up, 0 <= warmup_steps <= total_steps.
        global_batch_size: batch size summed over all devices, or None.
        reference_batch_size: batch size `base_learning_rate` was tuned for, or
            None; give both batch sizes or neither.
        restarts: further cycles after total_steps, each (steps >= 1, scale > 0).
        name: name of the schedule.

    Call arguments:
        step: the optimizer step, an integer scalar (tensor).

    Returns:
        float32 scalar, the learning rate of that step.

    Raises:
        ValueError: for a non-positive rate, total_steps < 1, warmup_steps outside
            [0, total_steps], only one of the two batch sizes, or a restart
            with steps < 1 or scale <= 0.

    Example:
        >>> schedule = WarmupCosineDecay(
        ...     1e-4, total_steps=1000, warmup_steps=100,
        ...     global_batch_size=64, reference_batch_size=32)
        >>> round(float(schedule(100)), 8)
        0.0002
    """

    def __init__(
        self,
        base_learning_rate: float,
        total_steps: int,
        warmup_steps: int = 0,
        global_batch_size: int | None = None,
        reference_batch_size: int | None = None,
        restarts: tuple[tuple[int, float], ...] = (),
        name: str = "warmup_cosine_decay",
    ):
        super().__init__()
        base_learning_rate = float(base_learning_rate)
        if not base_learning_rate > 0.0:
            raise ValueError(
                "base_learning_rate must be > 0. "
                f"Received: base_learning_rate={base_learning_rate}"
            )
        if int(total_steps) < 1:
            raise ValueError(f"total_steps must be >= 1. Received: {total_steps}")
        if not 0 <= int(warmup_steps) <= int(total_steps):
            raise ValueError(
                f"warmup_steps must be in [0, total_steps={total_steps}]. "
                f"Received: warmup_steps={warmup_steps}"
            )
        if (global_batch_size is None) != (reference_batch_size is None):
            raise ValueError(
                "Give both global_batch_size and reference_batch_size (the peak rate "
                "scales with their ratio) or neither. Received: global_batch_size="
                f"{global_batch_size}, reference_batch_size={reference_batch_size}"
            )
        if global_batch_size is not None and (
            int(global_batch_size) < 1 or int(reference_batch_size) < 1
        ):
            raise ValueError(
                "Batch sizes must be >= 1. Received: global_batch_size="
                f"{global_batch_size}, reference_batch_size={reference_batch_size}"
            )
        self.base_learning_rate = base_learning_rate
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.restarts = tuple((int(steps), float(scale)) for steps, scale in restarts)
        if any(steps < 1 or not scale > 0.0 for steps, scale in self.restarts):
            raise ValueError(
                "Each restart is (steps >= 1, scale > 0). Received: "
                f"restarts={restarts}"
            )
        self.global_batch_size = (
            None if global_batch_size is None else int(global_batch_size)
        )
        self.reference_batch_size = (
            None if reference_batch_size is None else int(reference_batch_size)
        )
        self.name = name

    @property
    def peak_learning_rate(self) -> float:
        """The rate at the end of the warm-up, scaled with the global batch size."""
        if self.global_batch_size is None:
            return self.base_learning_rate
        return (
            self.base_learning_rate * self.global_batch_size / self.reference_batch_size
        )

    @property
    def cycle_ends(self) -> tuple[int, ...]:
        """The step where each cycle ends: the first, then each restart's.

        The rate has decayed to 0 there: the points where a learning curve
        compares like with like.
        """
        ends = [self.total_steps]
        for steps, _ in self.restarts:
            ends.append(ends[-1] + steps)
        return tuple(ends)

    @property
    def end_step(self) -> int:
        """The step where the last cycle (the first, or the last restart) ends."""
        return self.cycle_ends[-1]

    @classmethod
    def from_epochs(
        cls,
        base_learning_rate: float,
        *,
        epochs: float,
        steps_per_epoch: int,
        warmup_epochs: float = 0.0,
        global_batch_size: int | None = None,
        reference_batch_size: int | None = None,
    ) -> WarmupCosineDecay:
        """The schedule for a run counted in epochs (steps rounded to integers).

        Args:
            base_learning_rate: peak rate at `reference_batch_size`.
            epochs: length of the run in epochs.
            steps_per_epoch: optimizer steps per epoch (batches per epoch).
            warmup_epochs: length of the warm-up in epochs.
            global_batch_size: batch size summed over all devices, or None.
            reference_batch_size: batch size the base rate was tuned for, or None.

        Returns:
            A `WarmupCosineDecay` with total_steps = round(epochs * steps_per_epoch)
            and warmup_steps = round(warmup_epochs * steps_per_epoch).
        """
        return cls(
            base_learning_rate,
            total_steps=round(epochs * steps_per_epoch),
            warmup_steps=round(warmup_epochs * steps_per_epoch),
            global_batch_size=global_batch_size,
            reference_batch_size=reference_batch_size,
        )

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        if self.warmup_steps > 0:
            warmup = keras.ops.minimum(1.0, step / float(self.warmup_steps))
        else:
            warmup = keras.ops.ones_like(step)
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = (step - self.warmup_steps) / decay_steps
        rate = self.peak_learning_rate * warmup * _half_cosine(progress)
        start = self.total_steps
        for steps, scale in self.restarts:
            progress = (step - start) / steps
            inside = keras.ops.logical_and(progress >= 0.0, progress < 1.0)
            rate = keras.ops.where(
                inside, self.peak_learning_rate * scale * _half_cosine(progress), rate
            )
            start += steps
        return rate

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "global_batch_size": self.global_batch_size,
            "reference_batch_size": self.reference_batch_size,
            "restarts": [list(restart) for restart in self.restarts],
            "name": self.name,
        }


def _half_cosine(progress):
    """(1 + cos(pi * progress)) / 2 for progress clipped to [0, 1]: 1 -> 0."""
    return 0.5 * (1.0 + keras.ops.cos(math.pi * keras.ops.clip(progress, 0.0, 1.0)))


def qm9_reference_schedule(
    *, global_batch_size: int, steps_per_epoch: int, epochs: float
) -> WarmupCosineDecay:
    """The learning-rate schedule of the reference QM9 recipe, for our batch size.

    1e-4 per global batch of 32, scaled linearly with `global_batch_size`; one epoch
    of linear warm-up, then cosine decay to 0 (``models.md`` section 1.7, from
    google-research/spherical-cnn at commit 5d351d3). The reference trained 2000
    epochs (250 for its small configuration) with Adam.

    Args:
        global_batch_size: molecules per optimizer step over all devices.
        steps_per_epoch: optimizer steps per epoch.
        epochs: length of the run in epochs.

    Returns:
        A `WarmupCosineDecay`.
    """
    return WarmupCosineDecay.from_epochs(
        QM9_REFERENCE_LEARNING_RATE,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        warmup_epochs=QM9_REFERENCE_WARMUP_EPOCHS,
        global_batch_size=global_batch_size,
        reference_batch_size=QM9_REFERENCE_BATCH_SIZE,
    )
