"""Plans: the cached device plan, its abstract structure and its host arrays agree."""

import jax
import numpy as np
import pytest

from keras_sphere.sphere import Grid
from keras_sphere.sphere import sht_plan
from keras_sphere.sphere.sht_plan import abstract_plan
from keras_sphere.sphere.sht_plan import plan_arrays

CASES = [
    (Grid(16, 16), 7, 0),  # spin 0: parity groups over northern rows
    (Grid(17, 20), 8, 0),  # odd n_lat: the equator row counted once
    (Grid(9, 16), 7, -1),  # latitude-limited: exact analysis tables
    (Grid(32, 64), 30, 2),
]


@pytest.mark.parametrize("grid, ell_max, spin", CASES)
def test_structure_and_host_arrays_match_the_cached_plan(grid, ell_max, spin):
    plan = sht_plan(grid, ell_max, spin)
    leaves, treedef = jax.tree_util.tree_flatten(plan)
    structure, abstract_treedef = jax.tree_util.tree_flatten(
        abstract_plan(grid, ell_max, spin)
    )
    assert abstract_treedef == treedef
    assert [(s.shape, s.dtype) for s in structure] == [
        (leaf.shape, leaf.dtype) for leaf in leaves
    ]
    host = list(plan_arrays(grid, ell_max, spin))
    assert all(isinstance(array, np.ndarray) for array in host)
    for array, leaf in zip(host, leaves, strict=True):
        np.testing.assert_array_equal(array, np.asarray(leaf))
    # A plan put together from the host arrays transforms like the cached one.
    rebuilt = jax.tree_util.tree_unflatten(treedef, [jax.device_put(a) for a in host])
    field = np.random.default_rng(0).standard_normal((2, *grid.shape))
    field = field.astype(np.complex64)
    np.testing.assert_array_equal(
        np.asarray(rebuilt.forward(field)), np.asarray(plan.forward(field))
    )


def test_structure_and_arrays_check_their_arguments():
    with pytest.raises(ValueError, match="lmax"):
        abstract_plan(Grid(8, 8), 3, spin=4)
    with pytest.raises(TypeError, match="Grid"):
        next(plan_arrays((8, 8), 3))
    with pytest.raises(ValueError, match="too large|exceeds|ell_max"):
        abstract_plan(Grid(8, 8), 40)
