"""Fields on sigma layer centres to pressure levels, with a stated extrapolation.

Sigma to pressure levels (`EXTRAPOLATION_RULE`): linear in log pressure between
layer centres; below the lowest layer centre (which includes pressures below the
ground) temperature follows a 6.5 K/km lapse rate from the lowest layer and
geopotential integrates the hydrostatic equation with that temperature; winds keep
their lowest-layer values. Above the highest layer centre the column is isothermal.

Used by the Held-Suarez simulator (`held_suarez`) for each 6-hourly output.
"""

from __future__ import annotations

__all__ = ["EXTRAPOLATION_RULE", "LAPSE_RATE", "to_pressure_levels"]

# Lapse rate for temperature below the lowest layer centre, K m^-1 (the ICAO
# standard atmosphere's 6.5 K/km, as used for ECMWF's below-ground extrapolation).
LAPSE_RATE = 0.0065

EXTRAPOLATION_RULE = (
    "Sigma to pressure levels: linear in log(p) between model layer centres. Below "
    "the lowest layer centre p_K (including pressures below the ground): "
    "T = T_K (p / p_K)^(R gamma / g) with gamma = 6.5 K/km, "
    "geopotential = Phi_K + (g T_K / gamma) (1 - (p / p_K)^(R gamma / g)) "
    "(hydrostatic with that temperature), u and v equal to their lowest-layer "
    "values. Above the highest layer centre p_1: T = T_1, geopotential = "
    "Phi_1 - R T_1 ln(p / p_1), u and v equal to their top-layer values. R and g are "
    "dinosaur's (dinosaur.scales)."
)


def to_pressure_levels(
    temperature,
    geopotential,
    u,
    v,
    surface_pressure,
    sigma,
    levels_pa,
    *,
    gas_constant: float,
    gravity: float,
) -> dict:
    """Interpolate layer-centre fields to pressure levels by `EXTRAPOLATION_RULE`.

    Args:
        temperature: K, shape (n_sigma, ...), at the sigma layer centres ordered
            top to bottom (as are the next three).
        geopotential: m^2 s^-2, shape (n_sigma, ...).
        u: eastward wind, m s^-1, shape (n_sigma, ...).
        v: northward wind, m s^-1, shape (n_sigma, ...).
        surface_pressure: shape (...), Pa.
        sigma: shape (n_sigma,), layer centres, strictly increasing in (0, 1).
        levels_pa: shape (n_levels,), target pressures in Pa.
        gas_constant: R in J kg^-1 K^-1.
        gravity: g in m s^-2.

    Returns:
        dict of the four fields, each of shape (n_levels, ...).
    """
    import jax.numpy as jnp

    log_sigma = jnp.log(jnp.asarray(sigma))
    spatial = (1,) * jnp.ndim(surface_pressure)
    # log(p / p_s) of each target level in each column: [level, ...]
    target = jnp.log(jnp.asarray(levels_pa)).reshape(-1, *spatial) - jnp.log(
        surface_pressure
    )
    above_count = jnp.sum(log_sigma.reshape(-1, 1, *spatial) <= target, axis=0)
    upper = jnp.clip(above_count, 1, log_sigma.shape[0] - 1)  # [level, ...]
    lower = upper - 1
    weight = (target - log_sigma[lower]) / (log_sigma[upper] - log_sigma[lower])

    def interpolate(field):
        low = jnp.take_along_axis(field, lower, axis=0)
        return low + weight * (jnp.take_along_axis(field, upper, axis=0) - low)

    below, above = target > log_sigma[-1], target < log_sigma[0]
    exponent = gas_constant * LAPSE_RATE / gravity
    ratio = jnp.exp(exponent * (target - log_sigma[-1]))  # (p / p_K)^(R gamma / g)
    t_bottom, t_top = temperature[-1], temperature[0]
    out = {
        "temperature": jnp.where(
            below, t_bottom * ratio, jnp.where(above, t_top, interpolate(temperature))
        ),
        "geopotential": jnp.where(
            below,
            geopotential[-1] + gravity * t_bottom / LAPSE_RATE * (1 - ratio),
            jnp.where(
                above,
                geopotential[0] - gas_constant * t_top * (target - log_sigma[0]),
                interpolate(geopotential),
            ),
        ),
    }
    for name, field in (("u_component_of_wind", u), ("v_component_of_wind", v)):
        out[name] = jnp.where(
            below, field[-1], jnp.where(above, field[0], interpolate(field))
        )
    return out
