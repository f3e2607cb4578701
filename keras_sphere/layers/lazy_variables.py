"""Variables whose value is made at first use: declared in ``build``, filled later.

Keras makes a variable's value when the variable is created, in ``build``. Two kinds
of layer state are better made later:

* transform tables (``transform_state.py``): gigabytes at large bandlimits, needed
  only once the layer runs, and never saved;
* random initial weights of a model that loads its weights next (a preset): each
  weight shape costs a compiled random-number program (``jax.random.normal`` took
  2.5-5.6 s per shape on this project's busy 2-core machine, 12 s of the 20 s that
  loading the cmb_1024 preset took) for values that are overwritten at once.

A `LazyVariable` is a `keras.Variable` declared with its shape, dtype and initializer
only. Its value is made by `make_value` at the first read that needs one, unless an
assignment (``load_weights``, ``set_weights``) gives it first. Reads inside a compiled
step get the step's input, as for any variable; reads during Keras' shape inference
(layers called on symbolic inputs, inside ``jax.eval_shape``) get an abstract
placeholder, which allocates nothing.

A random initializer with an integer seed (Keras draws one when the initializer is
made, in ``build``) gives the same values whenever it runs, so deferring it changes
no value; `add_lazy_weight` creates weights with an initializer seeded by a
`keras.random.SeedGenerator` eagerly, since those draws depend on their order.

Keras empties a model's variables while ``fit``, ``evaluate`` or ``predict`` runs
(the values travel through the compiled steps) and puts them back afterwards; a
`LazyVariable` read in between makes its value again, where a plain one returns its
initializer's output without keeping it.
"""

from __future__ import annotations

import jax
import keras

# Only the scopes' classes are public; these tell a read inside a compiled step (the
# step's value) and shape inference (a placeholder will do) from a real read.
# Checked against Keras 3.15.
from keras.src.backend.common.stateless_scope import get_stateless_scope
from keras.src.backend.common.stateless_scope import in_stateless_scope
from keras.src.backend.common.symbolic_scope import in_symbolic_scope

__all__ = ["LazyVariable", "add_lazy_weight"]


class LazyVariable(keras.Variable):
    """A `keras.Variable` whose value is made at its first read (see module docstring).

    Args: those of `keras.Variable`; `initializer` must be callable.
    """

    def _initialize_with_initializer(self, initializer):
        # Nothing allocated: fix the distribution layout only.
        self._initialize_layout()
        self._initializer = initializer
        self._value = None

    def _deferred_initialize(self):
        # Declared inside a stateless scope (Keras' automatic build of subclassed
        # models): still nothing to allocate.
        self._initialize_layout()

    def make_value(self) -> None:
        """Give the variable its value: by default, run the initializer."""
        with jax.ensure_compile_time_eval():
            value = self._initializer(self._shape, dtype=self._dtype)
            self._direct_assign(self._convert_to_tensor(value, dtype=self._dtype))

    @property
    def has_value(self) -> bool:
        """Whether the value exists (made, assigned, not emptied by a trainer)."""
        return self._value is not None

    @property
    def value(self):
        if in_stateless_scope():
            current = get_stateless_scope().get_current_value(self)
            if current is not None:
                return self._maybe_autocast(current)
        if self._value is None:
            if in_symbolic_scope():
                import jax.numpy as jnp

                # Traced by Keras' shape inference: abstract, allocates nothing.
                return self._maybe_autocast(jnp.zeros(self._shape, self._dtype))
            self.make_value()
        return self._maybe_autocast(self._value)


def add_lazy_weight(
    layer: keras.layers.Layer,
    *,
    shape,
    initializer,
    name: str,
    trainable: bool = True,
    autocast: bool = True,
) -> keras.Variable:
    """``layer.add_weight`` with the initial value made at the first read.

    For weights whose initial value is costly to make and usually overwritten
    (loaded presets). Weights of initializers seeded by a `keras.random.SeedGenerator`
    are created eagerly by ``layer.add_weight``: their values depend on draw order.

    Returns:
        The tracked weight variable (a `LazyVariable` unless created eagerly).
    """
    initializer = keras.initializers.get(initializer)
    if isinstance(getattr(initializer, "seed", None), keras.random.SeedGenerator):
        return layer.add_weight(
            shape=shape,
            initializer=initializer,
            name=name,
            trainable=trainable,
            autocast=autocast,
        )
    with keras.name_scope(layer.name, caller=layer):
        variable = LazyVariable(
            initializer=initializer,
            shape=shape,
            dtype=layer.variable_dtype,
            trainable=trainable,
            autocast=autocast,
            name=name,
        )
    layer._track_variable(variable)
    return variable
