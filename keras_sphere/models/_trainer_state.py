"""Keep a model's variables when `fit`, `evaluate` or `predict` fails in its first step.

Keras' JAX trainer (``keras/src/backend/jax/trainer.py``, Keras 3.15 and 3.16) takes
the value of every model variable into a local state and empties the variables
(``_purge_model_variables``, to save memory) before it runs the first step; it puts
the values back (``jax_state_sync``) only once a step has returned. An exception
raised while the step is traced, such as Keras' own input-shape error for a batch
of the wrong grid, leaves every variable empty: the weights are lost, and the next
call fails with ``TypeError: 'NoneType' object is not callable`` (or, for a weight
made at first use, silently starts again from its initial value). A plain functional
Keras model behaves the same; the fix belongs in Keras, and until then our task
models wrap these calls in `restore_variables_on_error`.
"""

from __future__ import annotations

import contextlib

__all__ = ["restore_variables_on_error"]


@contextlib.contextmanager
def restore_variables_on_error(model, *, build_optimizer: bool = False):
    """Put back the variable values the trainer dropped if the body raises.

    Only variables left empty are restored: values a finished step wrote back (or
    an interrupted `fit` synced) stay. Holding the arrays costs no memory: the
    steps of `predict` and `evaluate` hand unchanged variables (the transform
    tables) back in the same buffers, and the training step donates its inputs.

    Args:
        model: the `keras.Model` whose `fit`, `evaluate` or `predict` runs inside.
        build_optimizer: build the compiled optimizer first (for `fit`), so that
            its variables exist, and are protected, before the trainer empties them.
    """
    optimizer = getattr(model, "optimizer", None)
    if build_optimizer and optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    variables = [*model.trainable_variables, *model.non_trainable_variables]
    if optimizer is not None and optimizer.built:
        variables += optimizer.variables
    # `_value is None` marks a variable without a value: one the trainer emptied, or
    # a lazy one not made yet (``layers/lazy_variables.py``), which is left to be
    # made when first read. Reading `value` would make it, or fail once emptied.
    saved = [(v, v._value) for v in variables if v._value is not None]
    try:
        yield
    except BaseException:
        for variable, value in saved:
            is_deleted = getattr(value, "is_deleted", lambda: False)
            if variable._value is None and not is_deleted():
                variable.assign(value)
        raise
