"""dinosaur's dry primitive equations with Held-Suarez forcing, compiled once.

`HeldSuarezModel` builds the model of dinosaur's own Held-Suarez example
(``notebooks/held_suarez.ipynb`` in google-research/dinosaur) at a truncation and
number of sigma levels: the initial rest atmosphere, the 6-hour advance
(``imex_rk_sil3`` steps with an exponential filter) and the pressure-level fields
of a state (`sigma_to_pressure`). `simulate_held_suarez` (module `held_suarez`)
runs it and stores the output.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from keras_sphere.data.weather.sigma_to_pressure import to_pressure_levels

__all__ = ["OUTPUT_HOURS", "HeldSuarezModel", "held_suarez_model"]

OUTPUT_HOURS = 6  # one stored state every 6 simulated hours

# dinosaur's Held-Suarez example (notebooks/held_suarez.ipynb): reference surface
# pressure, perturbation amplitude (Pa) and exponential filter (tau in dinosaur's
# nondimensional time, order, cutoff).
P0_PA = 1e5
P1_PA = 5e3
FILTER = dict(tau=0.0087504, order=1.5, cutoff=0.8)


@lru_cache(maxsize=4)
def held_suarez_model(truncation, n_sigma_levels, time_step_minutes, levels):
    """One `HeldSuarezModel` per configuration: its compiled steps are reused."""
    return HeldSuarezModel(truncation, n_sigma_levels, time_step_minutes, levels)


class HeldSuarezModel:
    """dinosaur's dry primitive equations with Held-Suarez forcing, jitted."""

    def __init__(self, truncation, n_sigma_levels, time_step_minutes, levels):
        import jax
        from dinosaur import coordinate_systems
        from dinosaur import held_suarez
        from dinosaur import primitive_equations
        from dinosaur import primitive_equations_states
        from dinosaur import scales
        from dinosaur import sigma_coordinates
        from dinosaur import spherical_harmonic
        from dinosaur import time_integration
        from dinosaur import xarray_utils

        units = scales.units
        grid = spherical_harmonic.Grid.construct(
            max_wavenumber=truncation,
            gaussian_nodes=math.ceil((3 * truncation + 1) / 4),
        )
        vertical = sigma_coordinates.SigmaCoordinates.equidistant(n_sigma_levels)
        self.coords = coordinate_systems.CoordinateSystem(grid, vertical)
        self.specs = specs = primitive_equations.PrimitiveEquationsSpecs.from_si()
        p0, p1 = P0_PA * units.pascal, P1_PA * units.pascal
        self._initial_state_fn, aux = (
            primitive_equations_states.isothermal_rest_atmosphere(
                self.coords, specs, p0=p0, p1=p1
            )
        )
        reference_temperature = aux[xarray_utils.REF_TEMP_KEY]
        orography = primitive_equations.truncated_modal_orography(
            aux[xarray_utils.OROGRAPHY], self.coords
        )
        equation = time_integration.compose_equations(
            [
                primitive_equations.PrimitiveEquations(
                    reference_temperature, orography, self.coords, specs
                ),
                held_suarez.HeldSuarezForcing(
                    coords=self.coords,
                    physics_specs=specs,
                    reference_temperature=reference_temperature,
                    p0=p0,
                ),
            ]
        )
        dt = specs.nondimensionalize(time_step_minutes * units.minute)
        step = time_integration.step_with_filters(
            time_integration.imex_rk_sil3(equation, dt),
            [time_integration.exponential_step_filter(grid, dt, **FILTER)],
        )
        advance = time_integration.repeated(
            step, 60 * OUTPUT_HOURS // time_step_minutes
        )

        def si(value, unit):
            return float(specs.dimensionalize(value, unit).magnitude)

        gas_constant = si(specs.R, units.J / units.kilogram / units.degK)
        gravity = si(specs.g, units.m / units.s**2)
        to_pascal = math.log(si(1.0, units.pascal))
        to_m2_s2, to_m_s = si(1.0, units.m**2 / units.s**2), si(1.0, units.m / units.s)
        levels_pa = 100.0 * np.asarray(levels, np.float64)

        def fields(state) -> dict:
            """Pressure-level fields of one state: [level, lat, lon], north first."""
            temperature = (
                grid.to_nodal(state.temperature_variation)
                + (reference_temperature[:, None, None])
            )  # [sigma, lon, lat]
            geopotential = grid.to_nodal(
                primitive_equations.get_geopotential(
                    state.temperature_variation,
                    reference_temperature,
                    orography,
                    vertical,
                    gravity_acceleration=specs.g,
                    ideal_gas_constant=specs.R,
                )
            )
            u, v = spherical_harmonic.vor_div_to_uv_nodal(
                grid, state.vorticity, state.divergence
            )
            surface_pressure = jax.numpy.exp(
                grid.to_nodal(state.log_surface_pressure)[0] + to_pascal
            )  # [lon, lat]
            out = to_pressure_levels(
                si(1.0, units.degK) * temperature,
                to_m2_s2 * geopotential,
                to_m_s * u,
                to_m_s * v,
                surface_pressure,
                vertical.centers,
                levels_pa,
                gas_constant=gas_constant,
                gravity=gravity,
            )
            out["surface_pressure"] = surface_pressure
            # [..., lon, lat] -> [..., lat, lon], latitude north first
            return {
                name: jax.numpy.flip(jax.numpy.swapaxes(x, -1, -2), -2).astype(
                    "float32"
                )
                for name, x in out.items()
            }

        self.output_and_advance = jax.jit(lambda state: (fields(state), advance(state)))
        self.gas_constant, self.gravity = gas_constant, gravity
        self.time_stepping = (
            "dinosaur imex_rk_sil3 with exponential_step_filter(tau="
            f"{si(FILTER['tau'], units.s):.4g} s, order={FILTER['order']}, "
            f"cutoff={FILTER['cutoff']})"
        )
        self.rest_atmosphere = (
            "isothermal 288 K rest atmosphere, surface pressure "
            f"{P0_PA / 100:g} hPa plus a {P1_PA / 100:g} hPa bump at a random "
            "position (dinosaur isothermal_rest_atmosphere)"
        )
        lon, sin_lat = grid.nodal_axes
        self.latitude = np.degrees(np.arcsin(sin_lat))[::-1]
        self.longitude = np.degrees(lon)
        self.sigma = np.asarray(vertical.centers, np.float64)

    def initial_state(self, seed: int):
        import jax

        return self._initial_state_fn(jax.random.PRNGKey(seed))

    def state_from_arrays(self, arrays: dict):
        import jax.numpy as jnp
        from dinosaur import primitive_equations

        return primitive_equations.State(
            **{k: jnp.asarray(v) for k, v in arrays.items()}
        )
