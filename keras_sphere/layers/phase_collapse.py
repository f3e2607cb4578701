"""`PhaseCollapse`: the pointwise nonlinearity of the ICML 2023 spherical CNNs.

Spin-0 features are rebuilt from a linear map of the spin-0 slice plus a linear map of
the moduli of every spin; moduli are rotation-invariant, so they carry spin-s
information into spin 0 without breaking equivariance. Also home of `smooth_modulus`,
the differentiable |z| shared by the pointwise layers and readouts.
"""

from __future__ import annotations

import math

import keras

from keras_sphere.layers.batch_chunks import in_chunks
from keras_sphere.layers.degree_packing import pack_degrees
from keras_sphere.layers.degree_packing import unpack_degrees
from keras_sphere.layers.spins import atomic_build
from keras_sphere.layers.spins import check_jax_backend
from keras_sphere.layers.spins import fix_input_shape
from keras_sphere.layers.spins import normalize_spins
from keras_sphere.layers.spins import read_float32
from keras_sphere.layers.spins import real_block_matrix
from keras_sphere.layers.spins import spin_zero_index
from keras_sphere.layers.transform_state import TransformState
from keras_sphere.sphere import Grid

__all__ = ["MODULUS_EPSILON", "PhaseCollapse", "check_rank5_spins", "smooth_modulus"]

# Smoothing of |z| = sqrt(|z|^2 + eps^2): the gradient at z = 0 is 0 instead of NaN,
# and the value differs from |z| by at most eps (by eps^2 / (2 |z|) for |z| >> eps).
MODULUS_EPSILON = 1e-6


def smooth_modulus(field, epsilon: float = MODULUS_EPSILON):
    """Differentiable modulus sqrt(Re^2 + Im^2 + epsilon^2), computed in float32.

    Args:
        field: real or complex array of any shape.
        epsilon: smoothing; the result is >= epsilon and within epsilon of |field|.

    Returns:
        float32 array of the shape of `field`.
    """
    import jax.numpy as jnp

    field = jnp.asarray(field)
    if jnp.issubdtype(field.dtype, jnp.complexfloating):
        field = field.astype(jnp.complex64)
        power = jnp.square(field.real) + jnp.square(field.imag)
    else:
        power = jnp.square(field.astype(jnp.float32))
    return jnp.sqrt(power + epsilon**2)


def check_rank5_spins(layer_name: str, input_shape, spins) -> None:
    """ValueError unless `input_shape` is rank 5 with one spin-axis entry per spin."""
    if len(input_shape) != 5:
        raise ValueError(
            f"{layer_name} expects a rank-5 spatial input (batch, n_lat, n_lon, spins, "
            f"channels). Received shape {tuple(input_shape)}."
        )
    if input_shape[3] != len(spins):
        raise ValueError(
            f"{layer_name}: the spin axis has {input_shape[3]} entries but "
            f"spins={tuple(spins)}. Received shape {tuple(input_shape)}."
        )


@keras.saving.register_keras_serializable(package="keras_sphere")
class PhaseCollapse(keras.layers.Layer):
    """Phase collapse: a new spin-0 slice from spin 0 and the moduli of every spin.

    With x0 the spin-0 slice and |x| the moduli of all S spins (spin 0 included),
    flattened spin-major to S * C features (feature s_idx * C + c):

        new x0 = 0.5 * (x0 W1 + b1 + |x| W2 + b2),

    with complex W1 (C, C), b1 (C,), W2 (S * C, C), b2 (C,). Spins other than 0 pass
    through bit-identically. The layer is pointwise, hence exactly equivariant under
    the grid's discrete symmetries and approximately SO(3)-equivariant on band-limited
    inputs (the moduli are not band-limited). |z| is smoothed to
    sqrt(|z|^2 + eps^2) with eps = `MODULUS_EPSILON` (1e-6) so gradients at z = 0 are
    finite.

    Complex weights are stored as real pairs `w1_real`/`w1_imag`, `b1_*`, `w2_*`,
    `b2_*` (float32, not autocast): Keras count 2 [(S + 1) C^2 + 2 C]. Init (anchor:
    Flax lecun_normal for complex kernels): real and imaginary parts
    N(0, 1 / (2 fan_in)), fan_in = C for W1 and S * C for W2; biases 0.

    With ``representation="spectral"`` the layer maps coefficients to coefficients,
    X -> forward(PhaseCollapse(inverse(X))) with the pointwise step on `grid` (default
    the square model grid 2 (L + 1)), evaluated by `spectral`: only the moduli are
    transformed, and the linear maps act on coefficients. Use it where the next layer
    would transform the output anyway; ``ell_max_out`` truncates the output for a
    next layer that pools (nothing above it is computed).

    Args:
        spins: ordered spins of the input's spin axis; must contain 0 exactly once.
        kernel_initializer: overrides the default kernel initializer (both parts).
        bias_initializer: initializer of the bias parts, default zeros.
        representation: "spatial" or "spectral" (input and output alike).
        grid: (n_lat, n_lon) of the pointwise step in spectral mode.
        ell_max_out: output bandlimit in spectral mode, at most the input's L.

    Call arguments:
        inputs: spatial (batch, n_lat, n_lon, S, C), complex, or real when every spin
            is 0 (cast to complex); spectral (batch, L + 1, 2L + 1, S, C).

    Returns:
        complex64, (batch, n_lat, n_lon, S, C); spectral
        (batch, L_out + 1, 2 L_out + 1, S, C).

    Example:
        >>> layer = PhaseCollapse(spins=(0, 1))
        >>> layer(np.zeros((2, 8, 8, 2, 3), "complex64")).shape
        (2, 8, 8, 2, 3)

    Reference:
        Esteves et al., "Scaling Spherical CNNs", ICML 2023.
    """

    def __init__(
        self,
        spins=(0,),
        kernel_initializer=None,
        bias_initializer="zeros",
        representation: str = "spatial",
        grid: tuple[int, int] | None = None,
        ell_max_out: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_jax_backend(type(self).__name__)
        if representation not in ("spatial", "spectral"):
            raise ValueError(
                'representation must be "spatial" or "spectral". '
                f"Received: representation={representation!r}"
            )
        if representation == "spatial" and (grid, ell_max_out) != (None, None):
            raise ValueError(
                'grid and ell_max_out apply to representation="spectral" only.'
            )
        self.representation = representation
        self.grid = None if grid is None else tuple(int(n) for n in grid)
        self.ell_max_out = None if ell_max_out is None else int(ell_max_out)
        self.spins = normalize_spins(spins, "spins")
        self._zero_index = spin_zero_index(self.spins, type(self).__name__)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _kernel_initializer(self, fan_in: int):
        if self.kernel_initializer is not None:
            return keras.initializers.get(self.kernel_initializer)
        return keras.initializers.RandomNormal(stddev=math.sqrt(1.0 / (2.0 * fan_in)))

    def _complex_weight(self, name: str, shape, initializer):
        return tuple(
            self.add_weight(
                shape=shape,
                initializer=initializer,
                name=f"{name}_{part}",
                autocast=False,
            )
            for part in ("real", "imag")
        )

    @atomic_build
    def build(self, input_shape):
        fix_input_shape(self, input_shape)
        check_rank5_spins(self.name, input_shape, self.spins)
        channels = int(input_shape[-1])
        n_spins = len(self.spins)
        self.w1_real, self.w1_imag = self._complex_weight(
            "w1", (channels, channels), self._kernel_initializer(channels)
        )
        self.b1_real, self.b1_imag = self._complex_weight(
            "b1", (channels,), self.bias_initializer
        )
        self.w2_real, self.w2_imag = self._complex_weight(
            "w2",
            (n_spins * channels, channels),
            self._kernel_initializer(n_spins * channels),
        )
        self.b2_real, self.b2_imag = self._complex_weight(
            "b2", (channels,), self.bias_initializer
        )
        if self.representation == "spectral":
            ell_max, ell_out = self._bandlimits(input_shape)
            grid = (
                Grid.for_bandlimit(ell_max) if self.grid is None else Grid(*self.grid)
            )
            grid.check_bandlimit(ell_max)
            self._inverse = TransformState(self, grid, ell_max, self.spins, "inverse")
            self._moduli = TransformState(self, grid, ell_out, (0,), "moduli")

    def _bandlimits(self, input_shape) -> tuple[int, int]:
        """(L of the spectral input, L of the output)."""
        ell_max = int(input_shape[1]) - 1
        if input_shape[2] != 2 * ell_max + 1:
            raise ValueError(
                f"{self.name}: spectral input must have shape (batch, L + 1, 2L + 1, "
                f"spins, channels). Received shape {tuple(input_shape)}."
            )
        ell_out = ell_max if self.ell_max_out is None else self.ell_max_out
        if not 0 <= ell_out <= ell_max:
            raise ValueError(
                f"{self.name}: ell_max_out={ell_out} must lie in [0, {ell_max}] "
                f"for input shape {tuple(input_shape)}."
            )
        return ell_max, ell_out

    def compute_output_shape(self, input_shape):
        check_rank5_spins(self.name, input_shape, self.spins)
        if self.representation == "spectral":
            _, ell_out = self._bandlimits(input_shape)
            return (input_shape[0], ell_out + 1, 2 * ell_out + 1, *input_shape[3:])
        return tuple(input_shape)

    def _kernel(self, spectral: bool = False):
        """The real block matrix of both linear maps, scaled by 1/2.

        Rows act on [Re x0, Im x0, |x|] (spatial, (S + 2) C rows) or on
        [Re x0, Im x0, Re M, Im M] with M the coefficients of |x| (spectral,
        (2 S + 2) C rows); columns give [Re, Im] of the new spin 0 (2 C).
        """
        import jax.numpy as jnp

        w1 = real_block_matrix(read_float32(self.w1_real), read_float32(self.w1_imag))
        w2_real, w2_imag = read_float32(self.w2_real), read_float32(self.w2_imag)
        if spectral:  # the moduli's coefficients are complex
            w2 = real_block_matrix(w2_real, w2_imag)
        else:  # the moduli are real: only the [W2r, W2i] rows
            w2 = jnp.concatenate([w2_real, w2_imag], axis=1)
        return 0.5 * jnp.concatenate([w1, w2])

    def _bias(self):
        import jax

        return 0.5 * jax.lax.complex(
            read_float32(self.b1_real) + read_float32(self.b2_real),
            read_float32(self.b1_imag) + read_float32(self.b2_imag),
        )

    def _split_spin_zero(self, field):
        """(before, spin 0, after) slices of `field` along axis -2.

        `jnp.split` transposes to one concatenate; indexed slices transpose to pads
        that are added together.
        """
        import jax.numpy as jnp

        index = self._zero_index
        return jnp.split(field, [index, index + 1], axis=-2)

    def call(self, inputs):
        import jax
        import jax.numpy as jnp

        if self.representation == "spectral":
            return self._call_spectral(inputs)
        field = jnp.asarray(inputs)
        if jnp.issubdtype(field.dtype, jnp.complexfloating):
            field = field.astype(jnp.complex64)
        else:
            field = field.astype(jnp.float32).astype(jnp.complex64)
        shape = field.shape
        channels = shape[-1]
        rows = field.reshape(-1, len(self.spins), channels)  # [N, S, C]
        before, spin_zero, after = self._split_spin_zero(rows)
        spin_zero = spin_zero[:, 0]  # [N, C]
        moduli = smooth_modulus(rows).reshape(rows.shape[0], -1)  # [N, S * C]
        # Both terms as one real product (measured 1.3-1.5x faster than a complex
        # product plus two real ones, forward and backward):
        # [Re x0, Im x0, |x|] x [[W1r, W1i], [-W1i, W1r], [W2r, W2i]] = [Re, Im].
        features = jnp.concatenate([spin_zero.real, spin_zero.imag, moduli], axis=-1)
        # [N, (S + 2) C] x [(S + 2) C, 2 C] -> [N, 2 C]
        product = jnp.dot(features, self._kernel(), precision="highest")
        new_zero = jax.lax.complex(product[:, :channels], product[:, channels:])
        new_zero = new_zero + self._bias()
        out = jnp.concatenate([before, new_zero[:, None], after], axis=-2)
        return out.reshape(shape)

    def _call_spectral(self, coeffs):
        import jax
        import jax.numpy as jnp

        from keras_sphere.layers.spin_spherical_conv import _truncate_spectral
        from keras_sphere.sphere import truncate

        coeffs = jnp.asarray(coeffs).astype(jnp.complex64)

        def moduli_coefficients(part):
            moduli = self.moduli(self._inverse.to_spatial(part, self.spins))
            return self._moduli.to_spectral(moduli, (0,), packed=True)

        # Chunk by chunk, recomputed in the backward pass (jax.checkpoint): the
        # spatial fields never exist for the whole batch, only the small packed
        # coefficients of the moduli (the QM9 benchmark's step, whose first block
        # does this at L = 15 on 32 x 32, went from 5.6 to 5.2 s).
        moduli = in_chunks(jax.checkpoint(moduli_coefficients), coeffs)
        _, ell_out = self._bandlimits(coeffs.shape)
        if ell_out < coeffs.shape[1] - 1:
            coeffs = _truncate_spectral(coeffs, ell_out, truncate)
        return self.spectral(coeffs, moduli)

    def moduli(self, field):
        """|x| of every spin as one spin-0 field (the moduli `spectral` needs).

        Args:
            field: complex (batch, n_lat, n_lon, S, C).

        Returns:
            float32 (batch, n_lat, n_lon, 1, S * C), spin-major as in `call`.
        """
        moduli = smooth_modulus(field)
        return moduli.reshape(*moduli.shape[:3], 1, -1)

    def spectral(self, coeffs, moduli_coefficients):
        """The forward SHT of this layer's output, computed in the spectral domain.

        The linear maps commute with the per-channel transform, so for
        x = inverse(X) on a grid where forward(inverse(X)) = X (band-limited X on
        the grids of `keras_sphere.sphere`):

            forward(PhaseCollapse(x))_0 = 1/2 (X0 W1 + forward(|x|) W2)
                                          + sqrt(4 pi) (b1 + b2) / 2 at ell = m = 0,

        and every other spin stays X_s. Only the moduli are transformed (real,
        spin 0), and both maps act on the (L + 1)^2 coefficients instead of
        n_lat n_lon points: 2-4x less work than the layer followed by a forward SHT
        of all spins (``benchmarks/README.md``). Same weights as `call`.

        Args:
            coeffs: X, complex (batch, L + 1, 2L + 1, S, C), zero where a coefficient
                does not exist (|m| > ell or ell < |s|).
            moduli_coefficients: forward SHT up to L of `moduli(x)`, complex, in the
                packed layout (batch, (L + 1)^2, 1, S * C) of
                `degree_packing.pack_degrees`.

        Returns:
            complex64, (batch, L + 1, 2L + 1, S, C).
        """
        import jax
        import jax.numpy as jnp

        coeffs = jnp.asarray(coeffs).astype(jnp.complex64)
        batch, n_ell, _, _, channels = coeffs.shape
        ell_max = n_ell - 1
        before, zero, after = self._split_spin_zero(coeffs)
        spin_zero = pack_degrees(zero, ell_max)
        moduli = moduli_coefficients[:, :, 0, :]  # [b, P, S * C]
        features = jnp.concatenate(
            [
                spin_zero[:, :, 0].real,
                spin_zero[:, :, 0].imag,
                moduli.real,
                moduli.imag,
            ],
            axis=-1,
        )
        rows = features.reshape(-1, features.shape[-1])
        product = jnp.dot(rows, self._kernel(spectral=True), precision="highest")
        new_zero = jax.lax.complex(product[:, :channels], product[:, channels:])
        new_zero = new_zero.reshape(batch, -1, channels)  # packed [b, P, C]
        # The constant field (b1 + b2) / 2 is sqrt(4 pi) times it at ell = m = 0.
        new_zero = new_zero.at[:, 0].add(math.sqrt(4 * math.pi) * self._bias())
        new_zero = unpack_degrees(new_zero[:, :, None], ell_max)
        return jnp.concatenate([before, new_zero, after], axis=-2)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "spins": self.spins,
                "representation": self.representation,
                "grid": self.grid,
                "ell_max_out": self.ell_max_out,
                "kernel_initializer": keras.initializers.serialize(
                    keras.initializers.get(self.kernel_initializer)
                )
                if self.kernel_initializer is not None
                else None,
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
