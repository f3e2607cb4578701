"""Sigma-to-pressure interpolation against closed forms of an isothermal column."""

import numpy as np

from keras_sphere.data.weather.sigma_to_pressure import LAPSE_RATE
from keras_sphere.data.weather.sigma_to_pressure import to_pressure_levels


def test_pressure_levels_follow_the_extrapolation_rule():
    gas_constant, gravity, t0 = 287.0, 9.81, 250.0
    sigma = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    surface_pressure = np.array([[1.0e5, 0.95e5]])  # [lon, lat]
    pressure = sigma[:, None, None] * surface_pressure  # [sigma, lon, lat]
    # An isothermal column: geopotential is exactly linear in log(p).
    geopotential = gas_constant * t0 * np.log(surface_pressure / pressure)
    temperature = np.full_like(pressure, t0)
    u = np.broadcast_to(np.arange(5.0)[:, None, None], pressure.shape)
    levels_pa = np.array([5e3, 3e4, 6e4, 9.2e4, 1e5])
    out = to_pressure_levels(
        temperature,
        geopotential,
        u,
        -u,
        surface_pressure,
        sigma,
        levels_pa,
        gas_constant=gas_constant,
        gravity=gravity,
    )
    out = {k: np.asarray(v, np.float64) for k, v in out.items()}
    target = levels_pa[:, None, None] / surface_pressure  # sigma of each level
    inside = (target >= sigma[0]) & (target <= sigma[-1])
    exact = gas_constant * t0 * np.log(surface_pressure / levels_pa[:, None, None])
    np.testing.assert_allclose(out["geopotential"][inside], exact[inside], rtol=1e-5)
    np.testing.assert_allclose(out["temperature"][target < sigma[0]], t0, rtol=1e-6)
    # Above the top: isothermal hydrostatic, exact for this column too.
    above = target < sigma[0]
    np.testing.assert_allclose(out["geopotential"][above], exact[above], rtol=1e-5)
    # Below the lowest centre: 6.5 K/km lapse rate, hydrostatic with it.
    below = target > sigma[-1]
    # 920 and 1000 hPa lie under the lowest centres (900 and 855 hPa); 1000 hPa
    # is also under the ground of the 950 hPa column.
    assert below.sum() == 4
    exponent = gas_constant * LAPSE_RATE / gravity
    expected_t = t0 * (target / sigma[-1]) ** exponent
    np.testing.assert_allclose(out["temperature"][below], expected_t[below], rtol=1e-6)
    # d(geopotential)/d(log p) = -R T, checked by a centred difference at 1000 hPa
    step = 1e-3
    pair = to_pressure_levels(
        temperature,
        geopotential,
        u,
        u,
        surface_pressure,
        sigma,
        1e5 * np.exp([-step, step]),
        gas_constant=gas_constant,
        gravity=gravity,
    )
    slope = (np.asarray(pair["geopotential"][1]) - pair["geopotential"][0]) / (2 * step)
    np.testing.assert_allclose(slope, -gas_constant * out["temperature"][-1], rtol=1e-3)
    assert (out["u_component_of_wind"][below] == 4.0).all()
    assert (out["u_component_of_wind"][above] == 0.0).all()
    np.testing.assert_allclose(out["v_component_of_wind"], -out["u_component_of_wind"])
