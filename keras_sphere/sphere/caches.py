"""The in-memory caches of the sphere's device tables, and `clear_cache`.

Two caches hold tables on the device, each in the module that owns the tables:

* transform plans, per (grid, ell_max, spin, dtype) (``sht_plan.py``);
* Wigner Delta tables of the rotations, per (ell_max, dtype) (``rotation.py``).

Large transform tables are also kept on disk (``sht_tables.py``); clearing the memory
caches leaves them there. Keras layers hold their own copy of the tables they use
(``layers/transform_state.py``), which goes with the layers, not with this cache.
This module sits above both owners, so neither has to import the other to clear
everything.
"""

from __future__ import annotations

from keras_sphere.sphere.rotation import _delta_tables
from keras_sphere.sphere.sht_plan import _plan

__all__ = ["clear_cache"]


def clear_cache() -> None:
    """Drop the in-memory plans and tables (tables cached on disk stay)."""
    _plan.cache_clear()
    _delta_tables.cache_clear()
