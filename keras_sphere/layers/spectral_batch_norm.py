"""`SpectralBatchNorm`: rotation-equivariant batch normalisation of coefficients.

Statistics are rotation invariant (the batch mean of the spin-0 coefficient a_00 and,
per spin and channel, the power of the mean-free field), so the layer commutes with
every rotation in training and inference mode (``layers.md`` section 4).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_sphere.layers.spins import atomic_build
from keras_sphere.layers.spins import check_jax_backend
from keras_sphere.layers.spins import fix_input_shape
from keras_sphere.layers.spins import normalize_spins
from keras_sphere.layers.spins import read_float32
from keras_sphere.layers.spins import validity_mask

__all__ = ["SpectralBatchNorm"]

SQRT_4PI = math.sqrt(4.0 * math.pi)


@keras.saving.register_keras_serializable(package="keras_sphere")
class SpectralBatchNorm(keras.layers.Layer):
    """Batch normalisation of spin-weighted spherical harmonic coefficients.

    For input coefficients a (batch, L + 1, 2L + 1, S, C), in training mode:

    1. Spin 0 (if present): mu_c = masked batch mean of a[b, ell=0, m=0, spin 0, c]
       (complex), subtracted from that coefficient only.
    2. For every spin s and channel c: var_{s,c} = masked batch mean over b of
       (1 / 4 pi) sum |a[b, ell, m, s, c]|^2 over the valid coefficients with
       ell >= max(1, |s|), i.e. by Parseval the spatial variance of each example's
       mean-free field. Coefficients with ell < |s| or |m| > ell never enter.
    3. out = a * gamma_{s,c} / sqrt(var_{s,c} + epsilon) (complex gamma), plus
       sqrt(4 pi) beta_c at (ell=0, m=0, spin 0): a constant field beta_c in spatial
       units. The output is multiplied by the validity mask.
    4. The moving statistics follow moving = momentum * moving + (1 - momentum) * batch.

    In inference mode, or when ``trainable=False`` (a frozen layer, as Keras'
    `BatchNormalization`), the moving statistics are used and not updated.
    Statistics and outputs are computed in float32 / complex64 under every dtype
    policy.

    Weights (complex values are stored as real/imaginary float pairs):
        gamma_real, gamma_imag: (S, C), initialised to 1 and 0.
        beta_real, beta_imag: (C,), initialised to 0; only when spin 0 is present.
        moving_mean_real, moving_mean_imag: (C,), non-trainable, 0; the moving
            mean of a_00 in coefficient units; only when spin 0 is present.
        moving_variance: (S, C), non-trainable, 1.
    Without spin 0 there is no centring and no beta.

    Args:
        spins: ordered spins of the input's spin axis, e.g. (0,) or (0, 1).
        momentum: momentum of the moving statistics, in [0, 1).
        epsilon: added to the variance before the inverse square root, > 0.
        **kwargs: standard `keras.layers.Layer` arguments (name, dtype, trainable).

    Call arguments:
        inputs: complex64, shape (batch, L + 1, 2L + 1, S, C); coefficient (ell, m)
            at [ell, L + m].
        training: Python bool; Keras passes True inside `fit`.
        mask: optional float, shape (batch,): per-example weights (0/1 for padded
            examples, or any non-negative weights). Batch statistics become
            weighted means sum_b w_b x_b / sum_b w_b, so examples with weight 0 do
            not enter them; every example is still normalised. A batch whose
            weights sum to 0 leaves the moving statistics unchanged. Note that Keras
            fills `mask` from a Keras mask attached to the input tensor when none is
            passed; the layer itself neither consumes nor propagates Keras masks.

    Returns:
        complex64, the same shape as `inputs`.

    Raises:
        ValueError: in the constructor for bad spins, momentum or epsilon; in `build`
            for an input that is not (batch, L + 1, 2L + 1, len(spins), C), or whose
            L is below the largest |spin|.

    Example:
        >>> bn = SpectralBatchNorm(spins=(0, 1))
        >>> coeffs = np.zeros((2, 8, 15, 2, 4), "complex64")
        >>> bn(coeffs, training=True).shape
        (2, 8, 15, 2, 4)

    Reference:
        Esteves et al., "Scaling Spherical CNNs", ICML 2023 (spectral batch norm);
        here with fixed-shape moving statistics and valid coefficients only.
    """

    def __init__(
        self, spins=(0,), momentum: float = 0.99, epsilon: float = 1e-5, **kwargs
    ):
        super().__init__(**kwargs)
        check_jax_backend(type(self).__name__)
        momentum = float(momentum)
        epsilon = float(epsilon)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(
                f"momentum must be in [0, 1). Received: momentum={momentum}"
            )
        if not epsilon > 0.0:
            raise ValueError(f"epsilon must be > 0. Received: epsilon={epsilon}")
        self.spins = normalize_spins(spins, "spins")
        self.momentum = momentum
        self.epsilon = epsilon
        self._zero_index = self.spins.index(0) if 0 in self.spins else None

    # -- shapes ----------------------------------------------------------------------

    def _check_rank_and_spins(self, input_shape, layout: str) -> None:
        if len(input_shape) != 5:
            raise ValueError(
                f"{self.name} expects a rank-5 {layout} input. Received shape "
                f"{tuple(input_shape)} (rank {len(input_shape)})."
            )
        if input_shape[3] != len(self.spins):
            raise ValueError(
                f"{self.name}: the spin axis (axis 3) has {input_shape[3]} entries "
                f"but spins={self.spins} has {len(self.spins)}. Received shape "
                f"{tuple(input_shape)}."
            )

    def _input_bandlimit(self, input_shape) -> int:
        self._check_rank_and_spins(
            input_shape, "spectral (batch, L + 1, 2L + 1, spins, channels)"
        )
        ell_max = int(input_shape[1]) - 1
        if input_shape[2] != 2 * ell_max + 1:
            raise ValueError(
                f"{self.name}: spectral input must have shape (batch, L + 1, 2L + 1, "
                f"spins, channels). Received shape {tuple(input_shape)}; for L + 1 = "
                f"{ell_max + 1} axis 2 must have {2 * ell_max + 1} entries."
            )
        largest = max(abs(s) for s in self.spins)
        if ell_max < largest:
            raise ValueError(
                f"{self.name}: spin {largest} has no coefficients below ell = "
                f"{largest}, but the input holds degrees up to L = {ell_max}. "
                f"Received shape {tuple(input_shape)}."
            )
        return ell_max

    def compute_output_shape(self, input_shape):
        self._input_bandlimit(input_shape)
        return tuple(input_shape)

    # -- weights ---------------------------------------------------------------------

    @atomic_build
    def build(self, input_shape):
        fix_input_shape(self, input_shape)
        ell_max = self._input_bandlimit(input_shape)
        self._ell_max = ell_max
        self._build_statistics(int(input_shape[-1]))
        mask = validity_mask(ell_max, self.spins)  # [ell, m, s, 1]
        self._valid = mask
        # Coefficients that enter the variance: valid and ell >= 1.
        ell = np.arange(ell_max + 1)[:, None, None, None]
        self._power_mask = mask * (ell >= 1)

    def _build_statistics(self, n_channels: int) -> None:
        """Create gamma, beta and the moving statistics for `n_channels` channels."""
        n_spins = len(self.spins)

        def weight(name, shape, initializer, trainable=True):
            return self.add_weight(
                shape=shape,
                initializer=initializer,
                trainable=trainable,
                name=name,
                autocast=False,
            )

        self.gamma_real = weight("gamma_real", (n_spins, n_channels), "ones")
        self.gamma_imag = weight("gamma_imag", (n_spins, n_channels), "zeros")
        if self._zero_index is not None:
            self.beta_real = weight("beta_real", (n_channels,), "zeros")
            self.beta_imag = weight("beta_imag", (n_channels,), "zeros")
            self.moving_mean_real = weight(
                "moving_mean_real", (n_channels,), "zeros", trainable=False
            )
            self.moving_mean_imag = weight(
                "moving_mean_imag", (n_channels,), "zeros", trainable=False
            )
        self.moving_variance = weight(
            "moving_variance", (n_spins, n_channels), "ones", trainable=False
        )

    # -- statistics --------------------------------------------------------------------

    def _example_weights(self, mask, batch: int):
        """Per-example weights, float32 (batch,): ones when `mask` is None."""
        import jax.numpy as jnp

        if mask is None:
            return jnp.ones((batch,), jnp.float32)
        mask = jnp.asarray(mask)
        if mask.shape != (batch,):
            raise ValueError(
                f"{self.name}: mask must hold one weight per example, shape "
                f"({batch},). Received shape {tuple(mask.shape)}. A Keras mask "
                "attached to the input tensor is passed here too; remove it (or pass "
                "mask explicitly)."
            )
        return mask.astype(jnp.float32)

    def _statistics(self, zero_coeff, power, example_weights, training):
        """Mean of a_00 and variance to normalise with; updates moving statistics.

        Args:
            zero_coeff: complex64 (batch, C), a_00 of the spin-0 slice, or None.
            power: float32 (batch, S, C), each example's mean-free spatial variance.
            example_weights: float32 (batch,).
            training: whether to use (and track) batch statistics.

        Returns:
            (mean, variance): complex64 (C,) or None, and float32 (S, C).
        """
        import jax.numpy as jnp

        if not (training and self.trainable):
            return self._moving_mean(), read_float32(self.moving_variance)
        total = jnp.sum(example_weights)
        has_examples = total > 0
        safe_total = jnp.where(has_examples, total, 1.0)
        # [b] x [b, s, c] -> [s, c]
        variance = (
            jnp.einsum("b,bsc->sc", example_weights, power, precision="highest")
            / safe_total
        )
        momentum = self.momentum

        def moving(old, new, variable):
            updated = momentum * old + (1.0 - momentum) * new
            variable.assign(
                jnp.where(has_examples, updated, old).astype(variable.dtype)
            )

        moving(read_float32(self.moving_variance), variance, self.moving_variance)
        if zero_coeff is None:
            return None, variance
        weights = example_weights.astype(jnp.complex64)
        # [b] x [b, c] -> [c]
        mean = (
            jnp.einsum("b,bc->c", weights, zero_coeff, precision="highest") / safe_total
        )
        moving(read_float32(self.moving_mean_real), mean.real, self.moving_mean_real)
        moving(read_float32(self.moving_mean_imag), mean.imag, self.moving_mean_imag)
        return mean, variance

    def _moving_mean(self):
        import jax

        if self._zero_index is None:
            return None
        return jax.lax.complex(
            read_float32(self.moving_mean_real), read_float32(self.moving_mean_imag)
        )

    def _scale(self, variance):
        """The complex scale gamma / sqrt(variance + epsilon), complex64 (S, C)."""
        import jax
        import jax.numpy as jnp

        gamma = jax.lax.complex(
            read_float32(self.gamma_real), read_float32(self.gamma_imag)
        )
        return gamma * jax.lax.rsqrt(variance + self.epsilon).astype(jnp.complex64)

    def _beta(self):
        """Complex bias of the spin-0 slice, complex64 (C,), spatial units."""
        import jax

        return jax.lax.complex(
            read_float32(self.beta_real), read_float32(self.beta_imag)
        )

    # -- forward -----------------------------------------------------------------------

    def call(self, inputs, training=None, mask=None):
        import jax.numpy as jnp

        coeffs = jnp.asarray(inputs).astype(jnp.complex64)
        example_weights = self._example_weights(mask, coeffs.shape[0])
        # Valid coefficients with ell >= 1 only, summed [b, ell, m, s, c] -> [b, s, c];
        # / 4 pi turns the sum into a spatial mean (Parseval).
        power = jnp.sum(
            (coeffs.real**2 + coeffs.imag**2) * jnp.asarray(self._power_mask),
            axis=(1, 2),
        ) / (4.0 * math.pi)
        zero_coeff = None
        if self._zero_index is not None:
            zero_coeff = coeffs[:, 0, self._ell_max, self._zero_index, :]  # [b, c]
        mean, variance = self._statistics(zero_coeff, power, example_weights, training)
        if mean is not None:
            coeffs = coeffs.at[:, 0, self._ell_max, self._zero_index, :].add(-mean)
        out = coeffs * self._scale(variance)
        if self._zero_index is not None:
            out = out.at[:, 0, self._ell_max, self._zero_index, :].add(
                SQRT_4PI * self._beta()
            )
        return out * jnp.asarray(self._valid)

    def compute_mask(self, inputs, previous_mask):
        # `mask` holds per-example weights, not a Keras mask: do not propagate it.
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            {"spins": self.spins, "momentum": self.momentum, "epsilon": self.epsilon}
        )
        return config
