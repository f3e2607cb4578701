"""`WeatherBackbone`: a residual spherical UNet mapping a state to 6 h differences.

The state is a normalised real tensor (batch, n_lat, n_lon, channels) on the
equiangular grid `keras_sphere.sphere.Grid(n_lat, n_lon)` (row 0 at the north pole):
first `num_scalar_channels` scalar channels (spin 0: geopotential, temperature, ...
per level), then `num_wind_levels` channels of u (eastward wind), then
`num_wind_levels` channels of v (northward wind). Inside, the scalars are a spin-0
field and each level's u + i v a spin-1 field (``sphere-maths.md`` section 3.3); the
network keeps spins (0, 1) throughout (``models.md`` section 2.4):

    state -> StateToSpinFields: scalars (spin 0, real), wind u + i v (spin 1)
    -> stem: SpinSphericalConv (0) -> (0, 1) plus SpinSphericalConv (1) -> (0, 1),
       added, SpectralBatchNorm, PhaseCollapse                      level 0 (skip 0)
    -> SphericalResBlock(widths[i], downsample) for i = 1 .. depth - 1  (skip i)
    -> `bottleneck_blocks` SphericalResBlock(widths[-1])
    -> SphericalResBlock(widths[i], upsample) + skip i, for i = depth - 2 .. 0
    -> heads: SpinSphericalConv (0, 1) -> (0) with a bias (scalars) and
       (0, 1) -> (1) (wind), synthesised on the input grid
    -> SpinFieldsToState: Re of spin 0; Re and Im of spin 1 as u and v.

Blocks pass spherical-harmonic coefficients to each other, and the skips are added
in the spectral domain (the same network as passing grids; see `SphericalResBlock`).
Every linear step is exactly SO(3)-equivariant for the spins it maps; the phase
collapses are pointwise, so the whole network is equivariant exactly under the grid's
symmetries (a roll in longitude by a multiple of 2^(depth - 1) columns, the pi
rotation about the x axis) and up to discretisation (aliasing) error under other
rotations, with scalars rotating as spin-0 fields and u + i v as spin-1 fields.

Each input group has its own first convolution (their outputs are added) instead of
zero-padding the smaller group to a common channel count: the result is the same
family of functions (a convolution of zero channels contributes nothing), without
transforming zero channels or keeping kernel entries that only ever multiply zeros,
and the scalars take the transform's fast real path.
"""

from __future__ import annotations

import keras
import keras_hub

from keras_sphere.layers import PhaseCollapse
from keras_sphere.layers import SpectralBatchNorm
from keras_sphere.layers import SphericalResBlock
from keras_sphere.layers import SpinSphericalConv
from keras_sphere.sphere import Grid

__all__ = [
    "HEAD_INIT_SCALE",
    "SpinFieldsToState",
    "StateToSpinFields",
    "WeatherBackbone",
    "level_bandlimits",
]

_SPINS = (0, 1)
# The heads' kernels start at this fraction of a convolution's default scale
# (E|K|^2 = 1 / (S_in C_in)): the first predicted differences are about a tenth of
# their standard deviation, so an untrained forecaster stays near persistence while
# every layer gets gradients from the first step (a zero head would block them).
# Measured over 20 untrained steps (16 x 16, widths (4, 8), delta_scale 1, inference
# mode): state RMS 1.0 -> 2.3, against 1.0 -> 5e6 at the default scale.
HEAD_INIT_SCALE = 0.1


def _check_counts(num_scalar_channels, num_wind_levels) -> tuple[int, int]:
    counts = []
    for name, value in (
        ("num_scalar_channels", num_scalar_channels),
        ("num_wind_levels", num_wind_levels),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0. Received: {value!r}")
        counts.append(int(value))
    if sum(counts) == 0:
        raise ValueError(
            "The state needs at least one channel: num_scalar_channels and "
            "num_wind_levels are both 0."
        )
    return counts[0], counts[1]


@keras.saving.register_keras_serializable(package="keras_sphere")
class StateToSpinFields(keras.layers.Layer):
    """Split a weather state into a spin-0 scalar field and a spin-1 wind field.

    Args:
        num_scalar_channels: scalar channels at the start of the state.
        num_wind_levels: levels of u, then of v, after the scalars.

    Call arguments:
        state: float (batch, n_lat, n_lon, num_scalar_channels + 2 num_wind_levels).

    Returns:
        A list of the fields present, in this order: scalars, float32
        (batch, n_lat, n_lon, 1, num_scalar_channels) (spin axis of size 1, spin 0);
        wind u + i v, complex64 (batch, n_lat, n_lon, 1, num_wind_levels) (spin 1).
    """

    def __init__(self, num_scalar_channels: int, num_wind_levels: int, **kwargs):
        super().__init__(**kwargs)
        self.num_scalar_channels, self.num_wind_levels = _check_counts(
            num_scalar_channels, num_wind_levels
        )

    @property
    def channels(self) -> int:
        return self.num_scalar_channels + 2 * self.num_wind_levels

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] != self.channels:
            raise ValueError(
                f"{self.name} expects a state (batch, n_lat, n_lon, "
                f"{self.channels}): {self.num_scalar_channels} scalar channels, then "
                f"{self.num_wind_levels} of u and {self.num_wind_levels} of v. "
                f"Received shape {tuple(input_shape)}."
            )

    def compute_output_shape(self, input_shape):
        head = tuple(input_shape[:3])
        shapes = []
        if self.num_scalar_channels:
            shapes.append((*head, 1, self.num_scalar_channels))
        if self.num_wind_levels:
            shapes.append((*head, 1, self.num_wind_levels))
        return shapes

    def compute_output_spec(self, state):
        shapes = self.compute_output_shape(state.shape)
        dtypes = ["float32"] * bool(self.num_scalar_channels)
        dtypes += ["complex64"] * bool(self.num_wind_levels)
        return [
            keras.KerasTensor(shape, dtype)
            for shape, dtype in zip(shapes, dtypes, strict=True)
        ]

    def call(self, state):
        import jax
        import jax.numpy as jnp

        state = jnp.asarray(state, jnp.float32)
        n_scalar, n_wind = self.num_scalar_channels, self.num_wind_levels
        fields = []
        if n_scalar:
            fields.append(state[..., None, :n_scalar])
        if n_wind:
            u = state[..., n_scalar : n_scalar + n_wind]
            v = state[..., n_scalar + n_wind :]
            fields.append(jax.lax.complex(u, v)[..., None, :])
        return fields

    def get_config(self):
        return {
            **super().get_config(),
            "num_scalar_channels": self.num_scalar_channels,
            "num_wind_levels": self.num_wind_levels,
        }


@keras.saving.register_keras_serializable(package="keras_sphere")
class SpinFieldsToState(keras.layers.Layer):
    """The inverse layout of `StateToSpinFields`: spin fields back to state channels.

    Args:
        num_scalar_channels: scalar channels of the state.
        num_wind_levels: wind levels of the state.

    Call arguments:
        fields: list of the fields present, in order: spin-0 scalars, complex
            (batch, n_lat, n_lon, 1, num_scalar_channels), of which the real part is
            taken; spin-1 wind z = u + i v, complex
            (batch, n_lat, n_lon, 1, num_wind_levels).

    Returns:
        float32 (batch, n_lat, n_lon, num_scalar_channels + 2 num_wind_levels):
        Re(scalars), then u = Re(z), then v = Im(z).
    """

    def __init__(self, num_scalar_channels: int, num_wind_levels: int, **kwargs):
        super().__init__(**kwargs)
        self.num_scalar_channels, self.num_wind_levels = _check_counts(
            num_scalar_channels, num_wind_levels
        )

    def compute_output_shape(self, input_shape):
        channels = self.num_scalar_channels + 2 * self.num_wind_levels
        return (*tuple(input_shape[0][:3]), channels)

    def compute_output_spec(self, fields):
        return keras.KerasTensor(
            self.compute_output_shape([f.shape for f in fields]), "float32"
        )

    def call(self, fields):
        import jax.numpy as jnp

        fields = list(fields)
        parts = []
        if self.num_scalar_channels:
            parts.append(jnp.real(fields.pop(0))[..., 0, :])
        if self.num_wind_levels:
            wind = fields.pop(0)[..., 0, :]
            parts += [jnp.real(wind), jnp.imag(wind)]
        return jnp.concatenate(parts, axis=-1).astype(jnp.float32)

    def get_config(self):
        return {
            **super().get_config(),
            "num_scalar_channels": self.num_scalar_channels,
            "num_wind_levels": self.num_wind_levels,
        }


def level_bandlimits(grid_shape, depth: int) -> tuple[int, ...]:
    """Bandlimit L of each UNet level: the grid's, then halved L + 1 per level.

    Args:
        grid_shape: (n_lat, n_lon) of the state.
        depth: number of levels (len(widths)).

    Returns:
        (L_0, ..., L_{depth - 1}) with L_0 = Grid(n_lat, n_lon).max_bandlimit and
        L_i + 1 = (L_0 + 1) / 2^i.

    Raises:
        ValueError: if L_0 + 1 is not divisible by 2^(depth - 1), or the coarsest
            level would hold no degree 1 (spin-1 fields need L >= 1).
    """
    grid = Grid(*grid_shape)
    ell_top = grid.max_bandlimit
    factor = 2 ** (depth - 1)
    if (ell_top + 1) % factor or (ell_top + 1) // factor < 2:
        raise ValueError(
            f"A {grid.n_lat} x {grid.n_lon} grid holds degrees up to L = {ell_top}; "
            f"{depth} UNet levels halve L + 1 = {ell_top + 1} {depth - 1} times, "
            f"which needs L + 1 divisible by {factor} and a coarsest L >= 1. Use "
            "fewer widths, or a grid whose L + 1 is a multiple of "
            f"{2 * factor} (e.g. {2 * 2 * factor} x {2 * 2 * factor})."
        )
    return tuple((ell_top + 1) // 2**i - 1 for i in range(depth))


@keras.saving.register_keras_serializable(package="keras_sphere")
class WeatherBackbone(keras_hub.models.Backbone):
    """A residual spherical UNet predicting standardised 6 h differences of a state.

    Layers and the equivariance they keep: see the module docstring. With the default
    widths on a 64 x 64 grid the levels are 64 x 64 (L = 31, 32 channels), 32 x 32
    (L = 15, 64) and 16 x 16 (L = 7, 128).

    Args:
        grid_shape: (n_lat, n_lon) of the equiangular grid with both poles;
            Grid(n_lat, n_lon).max_bandlimit + 1 must be divisible by
            2^(len(widths) - 1).
        num_scalar_channels: spin-0 channels at the start of the state (>= 0).
        num_wind_levels: levels of u and of v after them (>= 0).
        widths: channels of each level, from the full grid down; the depth of the
            UNet is len(widths) (>= 1). Default (32, 64, 128).
        bottleneck_blocks: residual blocks at the coarsest level after the one that
            reaches it (at least one block must exist when depth is 1).
        num_filter_params: anchors of the localized filters of every convolution,
            clipped to the degrees each kernel has (None: full filters). Default 8.
        dtype: dtype policy (convolutions and transforms run in float32).

    Input: float32 (batch, n_lat, n_lon, num_scalar_channels + 2 num_wind_levels),
    a normalised state (channel layout in the module docstring).
    Output: float32, the same shape: per channel the predicted 6 h difference in
    units of its standard deviation (u and v from the spin-1 output's real and
    imaginary parts).

    Example:
        >>> backbone = WeatherBackbone((16, 16), 2, 1, widths=(4, 8))
        >>> backbone(np.zeros((1, 16, 16, 4), "float32")).shape
        (1, 16, 16, 4)
    """

    def __init__(
        self,
        grid_shape,
        num_scalar_channels: int,
        num_wind_levels: int,
        widths=(32, 64, 128),
        *,
        bottleneck_blocks: int = 1,
        num_filter_params: int | None = 8,
        dtype=None,
        **kwargs,
    ):
        try:
            grid = Grid(*(int(n) for n in grid_shape))
        except (TypeError, ValueError) as error:
            raise ValueError(
                "grid_shape must be (n_lat, n_lon) of an equiangular grid with both "
                f"poles. Received: grid_shape={grid_shape!r} ({error})"
            ) from None
        num_scalar_channels, num_wind_levels = _check_counts(
            num_scalar_channels, num_wind_levels
        )
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(
                f"widths needs at least one positive entry. Received: widths={widths}"
            )
        bottleneck_blocks = int(bottleneck_blocks)
        if bottleneck_blocks < 0 or (len(widths) == 1 and bottleneck_blocks == 0):
            raise ValueError(
                "bottleneck_blocks must be >= 0 (>= 1 with a single level). "
                f"Received: bottleneck_blocks={bottleneck_blocks}"
            )
        if num_filter_params is not None and int(num_filter_params) < 1:
            raise ValueError(
                "num_filter_params must be None or >= 1. "
                f"Received: num_filter_params={num_filter_params}"
            )
        num_filter_params = (
            None if num_filter_params is None else int(num_filter_params)
        )
        bandlimits = level_bandlimits(grid.shape, len(widths))

        def params(ell_kernel):  # anchors of a kernel covering degrees 0..ell_kernel
            return (
                None
                if num_filter_params is None
                else min(num_filter_params, ell_kernel + 1)
            )

        channels = num_scalar_channels + 2 * num_wind_levels
        state = keras.Input((grid.n_lat, grid.n_lon, channels), name="state")
        fields = StateToSpinFields(
            num_scalar_channels, num_wind_levels, name="to_spin_fields", dtype=dtype
        )(state)
        stem = []
        for spin, field in zip(
            [0] * bool(num_scalar_channels) + [1] * bool(num_wind_levels),
            fields,
            strict=True,
        ):
            stem.append(
                SpinSphericalConv(
                    widths[0],
                    (spin,),
                    _SPINS,
                    num_filter_params=params(bandlimits[0]),
                    output_representation="spectral",
                    name=f"stem_conv_spin{spin}",
                    dtype=dtype,
                )(field)
            )
        x = stem[0] if len(stem) == 1 else keras.layers.Add(name="stem_add")(stem)
        x = SpectralBatchNorm(_SPINS, name="stem_norm", dtype=dtype)(x)
        x = PhaseCollapse(
            _SPINS,
            representation="spectral",
            grid=grid.shape,
            name="stem_collapse",
            dtype=dtype,
        )(x)
        block = dict(
            spins_out=_SPINS,
            spins_in=_SPINS,
            input_representation="spectral",
            output_representation="spectral",
            dtype=dtype,
        )
        skips = [x]
        for level in range(1, len(widths)):
            x = SphericalResBlock(
                widths[level],
                downsample=True,
                num_filter_params=params(bandlimits[level]),
                name=f"down_{level}",
                **block,
            )(x)
            skips.append(x)
        for index in range(bottleneck_blocks):
            x = SphericalResBlock(
                widths[-1],
                num_filter_params=params(bandlimits[-1]),
                name=f"bottleneck_{index}",
                **block,
            )(x)
        for level in range(len(widths) - 2, -1, -1):
            # conv1 maps the coarser level's degrees: its kernel covers those.
            x = SphericalResBlock(
                widths[level],
                upsample=True,
                num_filter_params=params(bandlimits[level + 1]),
                name=f"up_{level}",
                **block,
            )(x)
            x = keras.layers.Add(name=f"skip_{level}")([x, skips[level]])
        # [(stddev of real and imaginary parts)]: HEAD_INIT_SCALE of the default.
        head_init = HEAD_INIT_SCALE * (1.0 / (2.0 * len(_SPINS) * widths[0])) ** 0.5
        heads = []
        if num_scalar_channels:
            heads.append(
                SpinSphericalConv(
                    num_scalar_channels,
                    _SPINS,
                    (0,),
                    num_filter_params=params(bandlimits[0]),
                    input_representation="spectral",
                    output_grid=grid.shape,
                    use_bias=True,
                    kernel_initializer=keras.initializers.RandomNormal(
                        stddev=head_init
                    ),
                    name="head_scalars",
                    dtype=dtype,
                )(x)
            )
        if num_wind_levels:
            heads.append(
                SpinSphericalConv(
                    num_wind_levels,
                    _SPINS,
                    (1,),
                    num_filter_params=params(bandlimits[0]),
                    input_representation="spectral",
                    output_grid=grid.shape,
                    kernel_initializer=keras.initializers.RandomNormal(
                        stddev=head_init
                    ),
                    name="head_wind",
                    dtype=dtype,
                )(x)
            )
        differences = SpinFieldsToState(
            num_scalar_channels, num_wind_levels, name="to_state", dtype=dtype
        )(heads)
        super().__init__(inputs=state, outputs=differences, dtype=dtype, **kwargs)
        self.grid_shape = grid.shape
        self.num_scalar_channels = num_scalar_channels
        self.num_wind_levels = num_wind_levels
        self.widths = widths
        self.bottleneck_blocks = bottleneck_blocks
        self.num_filter_params = num_filter_params

    @property
    def grid(self) -> Grid:
        """The `Grid` of the state."""
        return Grid(*self.grid_shape)

    @property
    def channels(self) -> int:
        """Channels of the state: num_scalar_channels + 2 num_wind_levels."""
        return self.num_scalar_channels + 2 * self.num_wind_levels

    @property
    def level_bandlimits(self) -> tuple[int, ...]:
        """Bandlimit L of each level, from the full grid down."""
        return level_bandlimits(self.grid_shape, len(self.widths))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_shape": list(self.grid_shape),
                "num_scalar_channels": self.num_scalar_channels,
                "num_wind_levels": self.num_wind_levels,
                "widths": list(self.widths),
                "bottleneck_blocks": self.bottleneck_blocks,
                "num_filter_params": self.num_filter_params,
            }
        )
        return config
