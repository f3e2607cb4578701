"""`SpinSphericalConv`: the rotation-equivariant spin-weighted spherical convolution."""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_sphere.layers.degree_mixing import mix_degrees
from keras_sphere.layers.lazy_variables import add_lazy_weight
from keras_sphere.layers.spins import atomic_build
from keras_sphere.layers.spins import check_jax_backend
from keras_sphere.layers.spins import fix_input_shape
from keras_sphere.layers.spins import normalize_spins
from keras_sphere.layers.spins import read_float32
from keras_sphere.layers.transform_state import TransformState
from keras_sphere.sphere import Grid

__all__ = [
    "SpinSphericalConv",
    "localized_interpolation",
]

_REPRESENTATIONS = ("spatial", "spectral")


def localized_interpolation(ell_max: int, num_params: int) -> np.ndarray:
    """Linear interpolation from P anchors on [0, 1] to degrees ell / ell_max.

    Returns:
        float32, shape (ell_max + 1, num_params); row ell holds the weights of the
        anchors (np.interp semantics), so P = ell_max + 1 is the identity.
    """
    if ell_max == 0:
        return np.ones((1, 1), np.float32)
    anchors = np.linspace(0.0, 1.0, num_params)
    positions = np.arange(ell_max + 1) / ell_max
    eye = np.eye(num_params)
    return np.stack(
        [np.interp(positions, anchors, eye[p]) for p in range(num_params)], axis=1
    ).astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_sphere")
class SpinSphericalConv(keras.layers.Layer):
    """Spin-weighted spherical convolution, exactly SO(3)-equivariant.

    out[ell, m, s_o, d] = sum_{s_i, c} in[ell, m, s_i, c] K[ell, s_i, s_o, c, d]: each
    degree ell is mixed across spins and channels by a kernel that does not depend on m,
    which is what makes the layer commute with every rotation (Esteves et al. 2020,
    2023).

    Args:
        filters: output channels C_out.
        spins_in: ordered spins of the input's spin axis, e.g. (0,) or (0, 1).
        spins_out: ordered spins of the output's spin axis.
        num_filter_params: None for a full kernel (one complex value per degree), or P
            anchors of a localized kernel linearly interpolated over ell / L_k (smooth
            spectra give spatially localized filters; P = L_k + 1 equals the full
            kernel).
        pooling: None, or "spectral": halve the resolution, L -> (L + 1) / 2 - 1
            (n -> n / 2 on the model grid); needs L + 1 even.
        upsampling: True to double the resolution, L -> 2L + 1 (zero-padding).
        input_representation: "spatial" (batch, n_lat, n_lon, S_in, C_in) samples on
            an equiangular grid with both poles, or "spectral"
            (batch, L + 1, 2L + 1, S_in, C_in) complex coefficients.
        output_representation: "spatial" or "spectral".
        ell_max_out: explicit output bandlimit (overrides pooling and upsampling).
        output_grid: (n_lat, n_lon) of a spatial output. Default: the input grid if the
            bandlimit is unchanged, else the square model grid 2 (L_out + 1).
        use_bias: add a learned constant spin-0 field (sqrt(4 pi) b at ell = m = 0).
        kernel_initializer: default: real and imaginary parts N(0, 1 / (2 S_in C_in)),
            so that E|K|^2 = 1 / (S_in C_in).
        bias_initializer: initializer of the bias parts.

    Call arguments:
        inputs: a tensor in `input_representation`; real input is allowed when
            spins_in == (0,).

    Returns:
        complex64 tensor in `output_representation` with spins `spins_out`.

    Example:
        >>> conv = SpinSphericalConv(8, spins_in=(0,), spins_out=(0, 1))
        >>> conv(np.zeros((2, 16, 16, 1, 3), "float32")).shape
        (2, 16, 16, 2, 8)
    """

    def __init__(
        self,
        filters: int,
        spins_in=(0,),
        spins_out=(0,),
        num_filter_params: int | None = None,
        pooling: str | None = None,
        upsampling: bool = False,
        input_representation: str = "spatial",
        output_representation: str = "spatial",
        ell_max_out: int | None = None,
        output_grid: tuple[int, int] | None = None,
        use_bias: bool = False,
        kernel_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_jax_backend(type(self).__name__)
        if int(filters) < 1:
            raise ValueError(f"filters must be >= 1. Received: filters={filters}")
        if pooling not in (None, "spectral"):
            raise ValueError(
                f'pooling must be None or "spectral". Received: pooling={pooling!r}'
            )
        if pooling and upsampling:
            raise ValueError("pooling and upsampling cannot both be set.")
        for name, value in (
            ("input_representation", input_representation),
            ("output_representation", output_representation),
        ):
            if value not in _REPRESENTATIONS:
                raise ValueError(
                    f"{name} must be one of {_REPRESENTATIONS}. Received: {value!r}"
                )
        if num_filter_params is not None and int(num_filter_params) < 1:
            raise ValueError(
                "num_filter_params must be None or >= 1. "
                f"Received: num_filter_params={num_filter_params}"
            )
        self.filters = int(filters)
        self.spins_in = normalize_spins(spins_in, "spins_in")
        self.spins_out = normalize_spins(spins_out, "spins_out")
        self.num_filter_params = (
            None if num_filter_params is None else int(num_filter_params)
        )
        self.pooling = pooling
        self.upsampling = bool(upsampling)
        self.input_representation = input_representation
        self.output_representation = output_representation
        self.ell_max_out = None if ell_max_out is None else int(ell_max_out)
        self.output_grid = None if output_grid is None else tuple(output_grid)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = keras.initializers.get(bias_initializer)

    # -- shapes ----------------------------------------------------------------------

    def _input_bandlimit(self, input_shape) -> tuple[int, Grid | None]:
        if len(input_shape) != 5:
            raise ValueError(
                f"{self.name} expects a rank-5 input (batch, n_lat, n_lon, spins, "
                "channels) or (batch, L + 1, 2L + 1, spins, channels). Received shape "
                f"{tuple(input_shape)}."
            )
        if input_shape[3] != len(self.spins_in):
            raise ValueError(
                f"{self.name}: the spin axis has {input_shape[3]} entries but "
                f"spins_in={self.spins_in}. Received shape {tuple(input_shape)}."
            )
        if self.input_representation == "spatial":
            grid = Grid(int(input_shape[1]), int(input_shape[2]))
            return grid.max_bandlimit, grid
        ell_max = int(input_shape[1]) - 1
        if input_shape[2] != 2 * ell_max + 1:
            raise ValueError(
                f"{self.name}: spectral input must have shape (batch, L + 1, 2L + 1, "
                f"spins, channels). Received shape {tuple(input_shape)}."
            )
        return ell_max, None

    def _output_bandlimit(self, ell_in: int) -> int:
        if self.ell_max_out is not None:
            return self.ell_max_out
        if self.pooling:
            if (ell_in + 1) % 2:
                raise ValueError(
                    f"{self.name}: spectral pooling halves L + 1 = {ell_in + 1}, which "
                    "is odd. Pass ell_max_out explicitly or use an input grid of size "
                    "2 (L + 1) with L + 1 even."
                )
            return (ell_in + 1) // 2 - 1
        if self.upsampling:
            return 2 * ell_in + 1
        return ell_in

    def _output_grid(self, ell_out: int, grid_in: Grid | None) -> Grid:
        if self.output_grid is not None:
            grid = Grid(*self.output_grid)
            grid.check_bandlimit(ell_out)
            return grid
        if grid_in is not None and ell_out == grid_in.max_bandlimit:
            return grid_in
        return Grid.for_bandlimit(ell_out)

    def compute_output_shape(self, input_shape):
        ell_in, grid_in = self._input_bandlimit(input_shape)
        ell_out = self._output_bandlimit(ell_in)
        n_spins = len(self.spins_out)
        if self.output_representation == "spectral":
            return (input_shape[0], ell_out + 1, 2 * ell_out + 1, n_spins, self.filters)
        grid = self._output_grid(ell_out, grid_in)
        return (input_shape[0], grid.n_lat, grid.n_lon, n_spins, self.filters)

    # -- weights -----------------------------------------------------------------------

    @atomic_build
    def build(self, input_shape):
        fix_input_shape(self, input_shape)
        ell_in, grid_in = self._input_bandlimit(input_shape)
        ell_out = self._output_bandlimit(ell_in)
        if grid_in is not None:
            grid_in.check_bandlimit(min(ell_in, ell_out))
        self._ell_in, self._ell_out = ell_in, ell_out
        self._ell_kernel = min(ell_in, ell_out)
        channels_in = int(input_shape[-1])
        n_in, n_out = len(self.spins_in), len(self.spins_out)
        if self.num_filter_params is None:
            shape = (self._ell_kernel + 1, n_in, n_out, channels_in, self.filters)
        else:
            if self.num_filter_params > self._ell_kernel + 1:
                raise ValueError(
                    f"{self.name}: num_filter_params={self.num_filter_params} exceeds "
                    f"the {self._ell_kernel + 1} degrees of the kernel."
                )
            shape = (n_in, n_out, channels_in, self.filters, self.num_filter_params)
            self._interpolation = localized_interpolation(
                self._ell_kernel, self.num_filter_params
            )
        initializer = self.kernel_initializer
        if initializer is None:
            stddev = math.sqrt(1.0 / (2.0 * n_in * channels_in))
            initializer = keras.initializers.RandomNormal(stddev=stddev)
        else:
            initializer = keras.initializers.get(initializer)
        # Drawn at first use: a loaded preset overwrites them without drawing.
        self.kernel_real = add_lazy_weight(
            self,
            shape=shape,
            initializer=initializer,
            name="kernel_real",
            autocast=False,
        )
        self.kernel_imag = add_lazy_weight(
            self,
            shape=shape,
            initializer=initializer,
            name="kernel_imag",
            autocast=False,
        )
        if self.use_bias:
            if 0 not in self.spins_out:
                raise ValueError(
                    f"{self.name}: use_bias adds a constant spin-0 field, but "
                    f"spins_out={self.spins_out} has no spin 0."
                )
            self.bias_real = self.add_weight(
                shape=(self.filters,),
                initializer=self.bias_initializer,
                name="bias_real",
                autocast=False,
            )
            self.bias_imag = self.add_weight(
                shape=(self.filters,),
                initializer=self.bias_initializer,
                name="bias_imag",
                autocast=False,
            )
        self._forward_tables = None
        if self.input_representation == "spatial":
            self._forward_tables = TransformState(
                self, grid_in, self._ell_kernel, self.spins_in, "forward"
            )
        self._inverse_tables = None
        if self.output_representation == "spatial":
            grid_out = self._output_grid(ell_out, grid_in)
            self._inverse_tables = TransformState(
                self, grid_out, ell_out, self.spins_out, "inverse"
            )
        # 1 where degree ell exists for output spin s (ell >= |s|), [ell, 1, o, 1, 1]:
        # masking the kernel zeroes the missing coefficients without a pass over
        # the output (orders |m| > ell are never written by `mix_degrees`).
        ell = np.arange(self._ell_kernel + 1)[:, None]
        exists = ell >= np.abs(np.asarray(self.spins_out))[None, :]
        self._kernel_mask = exists.astype(np.float32)[:, None, :, None, None]

    def kernel_parts(self):
        """Real and imaginary kernel parts per degree (localized ones interpolated).

        Returns:
            two float32 arrays, (L_k + 1, S_in, S_out, C_in, C_out).
        """
        import jax.numpy as jnp

        real, imag = read_float32(self.kernel_real), read_float32(self.kernel_imag)
        if self.num_filter_params is not None:
            # [ell, p] x [i, o, c, d, p] -> [ell, i, o, c, d]
            interp = jnp.asarray(self._interpolation)
            real = jnp.einsum("lp,iocdp->liocd", interp, real)
            imag = jnp.einsum("lp,iocdp->liocd", interp, imag)
        return real, imag

    def kernel(self):
        """Complex kernel per degree: complex64 (L_k + 1, S_in, S_out, C_in, C_out)."""
        import jax

        return jax.lax.complex(*self.kernel_parts())

    # -- forward -----------------------------------------------------------------------

    def call(self, inputs):
        import jax.numpy as jnp

        from keras_sphere.sphere import pad
        from keras_sphere.sphere import truncate

        if self._forward_tables is not None:
            coeffs = self._forward_tables.to_spectral(inputs, self.spins_in)
        else:
            coeffs = jnp.asarray(inputs).astype(jnp.complex64)
            if self._ell_kernel < self._ell_in:
                coeffs = _truncate_spectral(coeffs, self._ell_kernel, truncate)
        real, imag = self.kernel_parts()
        exists = jnp.asarray(self._kernel_mask)
        out = mix_degrees(coeffs, real * exists, imag * exists)
        if self._ell_out > self._ell_kernel:
            out = _pad_spectral(out, self._ell_out, pad)
        if self.use_bias:
            bias = jnp.asarray(self.bias_real.value, jnp.float32) + 1j * jnp.asarray(
                self.bias_imag.value, jnp.float32
            )
            index = self.spins_out.index(0)
            out = out.at[:, 0, self._ell_out, index, :].add(
                math.sqrt(4 * math.pi) * bias.astype(jnp.complex64)
            )
        if self._inverse_tables is not None:
            return self._inverse_tables.to_spatial(out, self.spins_out)
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "spins_in": self.spins_in,
                "spins_out": self.spins_out,
                "num_filter_params": self.num_filter_params,
                "pooling": self.pooling,
                "upsampling": self.upsampling,
                "input_representation": self.input_representation,
                "output_representation": self.output_representation,
                "ell_max_out": self.ell_max_out,
                "output_grid": self.output_grid,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    keras.initializers.get(self.kernel_initializer)
                )
                if self.kernel_initializer is not None
                else None,
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


def _truncate_spectral(coeffs, ell_max, truncate):
    """Truncate (batch, L + 1, 2L + 1, S, C) coefficients to ell_max."""
    import jax.numpy as jnp

    moved = jnp.moveaxis(jnp.moveaxis(coeffs, 1, -1), 1, -1)  # [b, s, c, ell, m]
    moved = truncate(moved, ell_max)
    return jnp.moveaxis(jnp.moveaxis(moved, -1, 1), -1, 1)


def _pad_spectral(coeffs, ell_max, pad):
    """Zero-pad (batch, L + 1, 2L + 1, S, C) coefficients to ell_max."""
    import jax.numpy as jnp

    moved = jnp.moveaxis(jnp.moveaxis(coeffs, 1, -1), 1, -1)
    moved = pad(moved, ell_max)
    return jnp.moveaxis(jnp.moveaxis(moved, -1, 1), -1, 1)
