import numpy as np

from keras_sphere.sphere import Grid
from keras_sphere.sphere import clear_cache
from keras_sphere.sphere import rotate_coefficients
from keras_sphere.sphere import sht_plan
from keras_sphere.sphere.rotation import _delta_tables
from keras_sphere.sphere.sht_plan import _plan


def test_clear_cache_empties_plans_and_rotation_tables():
    sht_plan(Grid.for_bandlimit(3))
    rotate_coefficients(np.zeros((4, 7), np.complex64), 0.1, 0.2, 0.3)
    assert _plan.cache_info().currsize > 0
    assert _delta_tables.cache_info().currsize > 0
    clear_cache()
    assert _plan.cache_info().currsize == 0
    assert _delta_tables.cache_info().currsize == 0
