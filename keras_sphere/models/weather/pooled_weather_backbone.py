"""`PooledWeatherBackbone`: a fine-grid forecaster that works mostly on a coarse grid.

At 256 x 256 (L = 127) every spherical convolution pays for transforms on a
65,536-point grid, so a UNet of the usual widths costs about 1.2 s per training
step on 2 CPU cores (`benchmarks/README.md`). Most of a 6 h change of the
large-scale flow is resolved at much lower degree, so this backbone spends its
width where it is cheap:

    state (n x n) -> SphericalDownsampling by `pool_factor` (exact: degrees above
                     L_coarse = n / pool_factor / 2 - 1 dropped)
                  -> coarse: WeatherBackbone(coarse_widths) on the coarse grid
                  -> SphericalUpsampling back (exact zero-padding of degrees)
                  +  fine: WeatherBackbone(fine_widths, no bottleneck) on the full
                     grid, thin, for the degrees the coarse branch cannot see
    -> the predicted normalised 6 h difference on the full grid.

Scalars are resampled as spin-0 fields and each level's u + i v as a spin-1 field,
so both branches, and the sum, keep the equivariance of `WeatherBackbone`. The
coarse branch has the architecture of a `WeatherBackbone` of the coarse grid:
weights of such a model (e.g. the ``weather_64`` preset's backbone for 256 x 256
with pool_factor 4) load into it with ``backbone.coarse.set_weights(...)``.
"""

from __future__ import annotations

import keras
import keras_hub

from keras_sphere.layers import SphericalDownsampling
from keras_sphere.layers import SphericalUpsampling
from keras_sphere.models.weather.weather_backbone import SpinFieldsToState
from keras_sphere.models.weather.weather_backbone import StateToSpinFields
from keras_sphere.models.weather.weather_backbone import WeatherBackbone
from keras_sphere.models.weather.weather_backbone import level_bandlimits
from keras_sphere.sphere import Grid

__all__ = ["PooledWeatherBackbone"]


def _resample(layer_class, state, counts, factor, name, dtype):
    """`layer_class` (Spherical{Down,Up}sampling) applied to a state's spin fields."""
    fields = StateToSpinFields(*counts, name=f"{name}_fields", dtype=dtype)(state)
    spins = [0] * bool(counts[0]) + [1] * bool(counts[1])
    resampled = [
        layer_class(
            spins=(spin,), factor=factor, name=f"{name}_spin{spin}", dtype=dtype
        )(field)
        for spin, field in zip(spins, fields, strict=True)
    ]
    return SpinFieldsToState(*counts, name=f"{name}_state", dtype=dtype)(resampled)


@keras.saving.register_keras_serializable(package="keras_sphere")
class PooledWeatherBackbone(keras_hub.models.Backbone):
    """A `WeatherBackbone` on a coarser grid plus a thin one on the full grid.

    Args:
        grid_shape: (n, n), the square model grid 2 (L + 1) x 2 (L + 1) of the
            state; L + 1 must be divisible by pool_factor * 2^(depth - 1) of each
            branch's depth.
        num_scalar_channels: spin-0 channels at the start of the state (>= 0).
        num_wind_levels: levels of u and of v after them (>= 0).
        pool_factor: the coarse grid is (n / pool_factor) x (n / pool_factor).
            Default 4 (256 x 256 -> 64 x 64).
        coarse_widths: widths of the coarse `WeatherBackbone`. Default (32, 64, 128).
        fine_widths: widths of the full-grid `WeatherBackbone` (no bottleneck
            blocks). Default (8, 16).
        bottleneck_blocks: bottleneck blocks of the coarse branch. Default 1.
        num_filter_params: anchors of the localized filters of both branches.
        dtype: dtype policy.

    Input: float32 (batch, n, n, num_scalar_channels + 2 num_wind_levels), a
    normalised state (channel layout of `WeatherBackbone`).
    Output: float32, the same shape: the predicted normalised 6 h difference.

    Example:
        >>> backbone = PooledWeatherBackbone(
        ...     (32, 32), 2, 1, pool_factor=2, coarse_widths=(4, 8), fine_widths=(2,)
        ... )
        >>> backbone(np.zeros((1, 32, 32, 4), "float32")).shape
        (1, 32, 32, 4)
    """

    def __init__(
        self,
        grid_shape,
        num_scalar_channels: int,
        num_wind_levels: int,
        *,
        pool_factor: int = 4,
        coarse_widths=(32, 64, 128),
        fine_widths=(8, 16),
        bottleneck_blocks: int = 1,
        num_filter_params: int | None = 8,
        dtype=None,
        **kwargs,
    ):
        try:
            grid = Grid(*(int(n) for n in grid_shape))
        except (TypeError, ValueError) as error:
            raise ValueError(
                "grid_shape must be (n, n) of a square model grid with both poles. "
                f"Received: grid_shape={grid_shape!r} ({error})"
            ) from None
        if grid.shape != Grid.for_bandlimit(grid.max_bandlimit).shape:
            raise ValueError(
                "grid_shape must be a square model grid 2 (L + 1) x 2 (L + 1), e.g. "
                f"(256, 256). Received: grid_shape={grid_shape!r}"
            )
        if isinstance(pool_factor, bool) or not isinstance(pool_factor, int):
            raise ValueError(f"pool_factor must be an int. Received: {pool_factor!r}")
        if pool_factor < 2 or grid.n_lat % pool_factor:
            raise ValueError(
                f"pool_factor must be >= 2 and divide the grid size {grid.n_lat}. "
                f"Received: pool_factor={pool_factor}"
            )
        coarse_shape = (grid.n_lat // pool_factor, grid.n_lon // pool_factor)
        coarse_widths = tuple(int(w) for w in coarse_widths)
        fine_widths = tuple(int(w) for w in fine_widths)
        for name, shape, widths in (
            ("coarse_widths", coarse_shape, coarse_widths),
            ("fine_widths", grid.shape, fine_widths),
        ):
            try:
                level_bandlimits(shape, len(widths))
            except ValueError as error:
                raise ValueError(f"{name}={widths}: {error}") from None
        counts = (int(num_scalar_channels), int(num_wind_levels))
        branch = dict(num_filter_params=num_filter_params, dtype=dtype)
        coarse = WeatherBackbone(
            coarse_shape,
            *counts,
            widths=coarse_widths,
            bottleneck_blocks=bottleneck_blocks,
            name="coarse",
            **branch,
        )
        fine = WeatherBackbone(
            grid.shape,
            *counts,
            widths=fine_widths,
            bottleneck_blocks=0 if len(fine_widths) > 1 else 1,
            name="fine",
            **branch,
        )
        state = keras.Input((*grid.shape, coarse.channels), name="state")
        pooled = _resample(
            SphericalDownsampling, state, counts, pool_factor, "pool", dtype
        )
        coarse_difference = _resample(
            SphericalUpsampling, coarse(pooled), counts, pool_factor, "unpool", dtype
        )
        difference = keras.layers.Add(name="coarse_plus_fine", dtype=dtype)(
            [coarse_difference, fine(state)]
        )
        super().__init__(inputs=state, outputs=difference, dtype=dtype, **kwargs)
        self.coarse = coarse
        self.fine = fine
        self.grid_shape = grid.shape
        self.num_scalar_channels = coarse.num_scalar_channels
        self.num_wind_levels = coarse.num_wind_levels
        self.pool_factor = pool_factor
        self.coarse_widths = coarse_widths
        self.fine_widths = fine_widths
        self.bottleneck_blocks = int(bottleneck_blocks)
        self.num_filter_params = coarse.num_filter_params

    @property
    def grid(self) -> Grid:
        """The `Grid` of the state."""
        return Grid(*self.grid_shape)

    @property
    def channels(self) -> int:
        """Channels of the state: num_scalar_channels + 2 num_wind_levels."""
        return self.num_scalar_channels + 2 * self.num_wind_levels

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_shape": list(self.grid_shape),
                "num_scalar_channels": self.num_scalar_channels,
                "num_wind_levels": self.num_wind_levels,
                "pool_factor": self.pool_factor,
                "coarse_widths": list(self.coarse_widths),
                "fine_widths": list(self.fine_widths),
                "bottleneck_blocks": self.bottleneck_blocks,
                "num_filter_params": self.num_filter_params,
            }
        )
        return config
