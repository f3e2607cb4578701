"""`SphericalResBlock`: the efficient residual block of "Scaling Spherical CNNs"."""

from __future__ import annotations

import keras

from keras_sphere.layers.phase_collapse import PhaseCollapse
from keras_sphere.layers.spectral_batch_norm import SpectralBatchNorm
from keras_sphere.layers.spin_spherical_conv import SpinSphericalConv
from keras_sphere.layers.spin_spherical_conv import _pad_spectral
from keras_sphere.layers.spins import atomic_build
from keras_sphere.layers.spins import check_jax_backend
from keras_sphere.layers.spins import fix_input_shape
from keras_sphere.layers.spins import normalize_spins
from keras_sphere.layers.spins import spin_zero_index
from keras_sphere.layers.spins import validity_mask
from keras_sphere.layers.transform_state import TransformState
from keras_sphere.sphere import Grid

__all__ = ["SphericalResBlock"]


@keras.saving.register_keras_serializable(package="keras_sphere")
class SphericalResBlock(keras.layers.Layer):
    """Residual block with its skip connection in the spectral domain.

    Data flow (``layers.md`` section 5), X the forward SHT of the input (spectral
    pooling fused into it when downsampling):

        main = BN2(conv2(PhaseCollapse(inverse(BN1(conv1(X))))))   (BN2 gamma = 0)
        skip = X, or BN_s(X P) with a real (C_in, C) channel mixing P when C_in != C
        out  = PhaseCollapse(inverse(mask * (main + skip)))

    A phase collapse whose output only feeds a forward SHT (the first one always; the
    last one with ``output_representation="spectral"``) runs in the spectral domain
    (`PhaseCollapse.spectral`): the same function to float32 round-off, with only
    the moduli transformed. Chaining blocks spectrally (``output_representation=
    "spectral"`` into ``input_representation="spectral"``) computes the same network
    as chaining them spatially, faster.

    The skip adds to spins present in both `spins_in` and `spins_out`; spins only in
    `spins_out` get none, spins only in `spins_in` are dropped. BN2 starts with
    gamma = 0, so the block starts as its shortcut. Everything on the skip path is
    linear and m-independent, hence exactly SO(3)-equivariant; the phase collapses
    are pointwise (approximately equivariant, exactly under the grid symmetries).
    Fixes over the reference implementation: the projection exists only when the
    channel counts differ and has no bias, and the shortcut BN uses the shortcut's own
    spins.

    Args:
        filters: output channels C.
        spins_out: ordered output spins; must contain 0 (phase collapse).
        downsample: halve the resolution (spectral pooling, L -> (L + 1) / 2 - 1).
        upsample: double the resolution (L -> 2L + 1, zero-padding).
        spins_in: ordered input spins; default `spins_out`.
        num_filter_params: anchors of the localized kernels of both convolutions
            (None: full kernels).
        input_representation: "spatial" (batch, n_lat, n_lon, S_in, C_in) or
            "spectral" (batch, L + 1, 2L + 1, S_in, C_in).
        output_representation: "spatial", or "spectral": the forward SHT of the
            spatial output, (batch, L_out + 1, 2 L_out + 1, S_out, C).
        momentum: momentum of the batch norms' moving statistics.
        epsilon: batch norm epsilon.

    Call arguments:
        inputs: tensor in `input_representation`.
        training: Python bool (Keras passes it inside `fit`).
        mask: optional per-example weights (batch,) for the batch statistics.

    Returns:
        complex64, (batch, n_lat', n_lon', S_out, C) on the input grid, or on the
        square grid 2 (L_out + 1) when the bandlimit changes; spectral output
        (batch, L_out + 1, 2 L_out + 1, S_out, C).
    """

    def __init__(
        self,
        filters: int,
        spins_out=(0, 1),
        downsample: bool = False,
        upsample: bool = False,
        spins_in=None,
        num_filter_params: int | None = None,
        input_representation: str = "spatial",
        output_representation: str = "spatial",
        momentum: float = 0.99,
        epsilon: float = 1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_jax_backend(type(self).__name__)
        if downsample and upsample:
            raise ValueError("downsample and upsample cannot both be set.")
        for name, value in (
            ("input_representation", input_representation),
            ("output_representation", output_representation),
        ):
            if value not in ("spatial", "spectral"):
                raise ValueError(
                    f'{name} must be "spatial" or "spectral". Received: {value!r}'
                )
        self.filters = int(filters)
        self.spins_out = normalize_spins(spins_out, "spins_out")
        spin_zero_index(self.spins_out, type(self).__name__)
        self.spins_in = (
            self.spins_out
            if spins_in is None
            else normalize_spins(spins_in, "spins_in")
        )
        self.downsample = bool(downsample)
        self.upsample = bool(upsample)
        self.num_filter_params = (
            None if num_filter_params is None else int(num_filter_params)
        )
        self.input_representation = input_representation
        self.output_representation = output_representation
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        norm = dict(momentum=self.momentum, epsilon=self.epsilon)
        conv = dict(
            filters=self.filters,
            spins_out=self.spins_out,
            num_filter_params=self.num_filter_params,
            input_representation="spectral",
            output_representation="spectral",
        )
        self.conv1 = SpinSphericalConv(spins_in=self.spins_in, name="conv1", **conv)
        self.norm1 = SpectralBatchNorm(self.spins_out, name="norm1", **norm)
        self.collapse1 = PhaseCollapse(self.spins_out, name="collapse1")
        self.conv2 = SpinSphericalConv(spins_in=self.spins_out, name="conv2", **conv)
        self.norm2 = SpectralBatchNorm(self.spins_out, name="norm2", **norm)
        self.shortcut_norm = None
        self.collapse2 = PhaseCollapse(self.spins_out, name="collapse2")

    def _bandlimits(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(
                f"{self.name} expects a rank-5 input (batch, n_lat, n_lon, spins, "
                f"channels). Received shape {tuple(input_shape)}."
            )
        if input_shape[3] != len(self.spins_in):
            raise ValueError(
                f"{self.name}: the spin axis has {input_shape[3]} entries but "
                f"spins_in={self.spins_in}. Received shape {tuple(input_shape)}."
            )
        if self.input_representation == "spatial":
            grid_in = Grid(int(input_shape[1]), int(input_shape[2]))
            ell_in = grid_in.max_bandlimit
        else:
            grid_in, ell_in = None, int(input_shape[1]) - 1
        if self.downsample:
            if (ell_in + 1) % 2:
                raise ValueError(
                    f"{self.name}: downsampling halves L + 1 = {ell_in + 1}, which is "
                    "odd. Use an input grid of size 2 (L + 1) with L + 1 even."
                )
            ell_out = (ell_in + 1) // 2 - 1
        elif self.upsample:
            ell_out = 2 * ell_in + 1
        else:
            ell_out = ell_in
        if grid_in is not None and ell_out == ell_in:
            grid_out = grid_in
        else:
            grid_out = Grid.for_bandlimit(ell_out)
        return grid_in, ell_in, grid_out, ell_out

    def compute_output_shape(self, input_shape):
        _, _, grid_out, ell_out = self._bandlimits(input_shape)
        if self.output_representation == "spectral":
            n_spins = len(self.spins_out)
            return (input_shape[0], ell_out + 1, 2 * ell_out + 1, n_spins, self.filters)
        return (
            input_shape[0],
            grid_out.n_lat,
            grid_out.n_lon,
            len(self.spins_out),
            self.filters,
        )

    @atomic_build
    def build(self, input_shape):
        fix_input_shape(self, input_shape)
        grid_in, ell_in, grid_out, ell_out = self._bandlimits(input_shape)
        self._ell_skip = min(ell_in, ell_out)  # bandlimit of X
        self._ell_out = ell_out
        channels_in = int(input_shape[-1])
        n_in, n_out = len(self.spins_in), len(self.spins_out)
        self._forward = None
        if grid_in is not None:
            self._forward = TransformState(
                self, grid_in, self._ell_skip, self.spins_in, "forward"
            )
        self._inverse = TransformState(
            self, grid_out, ell_out, self.spins_out, "inverse"
        )
        # Forward SHT of the phase collapses' moduli (real, spin 0).
        self._moduli = TransformState(self, grid_out, ell_out, (0,), "moduli")
        self.conv1.ell_max_out = ell_out
        x_shape = (None, self._ell_skip + 1, 2 * self._ell_skip + 1, n_in, channels_in)
        self.conv1.build(x_shape)
        y_shape = (None, ell_out + 1, 2 * ell_out + 1, n_out, self.filters)
        self.norm1.build(y_shape)
        spatial = (None, grid_out.n_lat, grid_out.n_lon, n_out, self.filters)
        self.collapse1.build(spatial)
        self.conv2.build(y_shape)
        self.norm2.build(y_shape)
        # The block starts as its shortcut (FixUp-style zero scale on the main branch).
        self.norm2.gamma_real.assign(keras.ops.zeros(self.norm2.gamma_real.shape))
        self.collapse2.build(spatial)
        self.projection = None
        if channels_in != self.filters:
            self.projection = self.add_weight(
                shape=(channels_in, self.filters),
                initializer=keras.initializers.RandomNormal(
                    stddev=(1.0 / channels_in) ** 0.5
                ),
                name="projection",
                autocast=False,
            )
            self.shortcut_norm = SpectralBatchNorm(
                self.spins_in,
                name="shortcut_norm",
                momentum=self.momentum,
                epsilon=self.epsilon,
            )
            skip_shape = (
                None,
                self._ell_skip + 1,
                2 * self._ell_skip + 1,
                n_in,
                self.filters,
            )
            self.shortcut_norm.build(skip_shape)
        # Where each input spin goes in the output (spins only in spins_in are dropped).
        self._skip_pairs = [
            (self.spins_in.index(s), self.spins_out.index(s))
            for s in self.spins_out
            if s in self.spins_in
        ]
        self._mask = validity_mask(ell_out, self.spins_out)

    def compute_mask(self, inputs, previous_mask=None):
        # `mask` is a per-example weight for the batch norms, not a Keras mask.
        return None

    def call(self, inputs, training=None, mask=None):
        total = self._spectral_sum(inputs, training, mask)
        field = self._inverse.to_spatial(total, self.spins_out)
        if self.output_representation == "spectral":
            return self._collapse_spectrally(self.collapse2, total, field)
        return self.collapse2(field)

    def _collapse_spectrally(self, collapse, coeffs, field):
        """`collapse` between `field` = inverse(coeffs) and a forward SHT."""
        moduli = self._moduli.to_spectral(collapse.moduli(field), (0,), packed=True)
        return collapse.spectral(coeffs, moduli)

    def _spectral_sum(self, inputs, training=None, mask=None):
        """The sum main + skip in the spectral domain, before the last inverse SHT."""
        import jax
        import jax.numpy as jnp

        from keras_sphere.sphere import pad

        if self._forward is not None:
            coeffs = self._forward.to_spectral(inputs, self.spins_in)
        else:
            coeffs = jnp.asarray(inputs).astype(jnp.complex64)
            if self._ell_skip < inputs.shape[1] - 1:
                from keras_sphere.layers.spin_spherical_conv import _truncate_spectral
                from keras_sphere.sphere import truncate

                coeffs = _truncate_spectral(coeffs, self._ell_skip, truncate)
        main = self.norm1(self.conv1(coeffs), training=training, mask=mask)
        field = self._inverse.to_spatial(main, self.spins_out)
        main = self._collapse_spectrally(self.collapse1, main, field)
        main = self.norm2(self.conv2(main), training=training, mask=mask)
        skip = coeffs
        if self.projection is not None:
            kernel = jnp.asarray(self.projection.value, jnp.float32)
            # [b, ell, m, s, c] x [c, d] -> [b, ell, m, s, d], on the real and
            # imaginary parts as one real product: a complex einsum would promote
            # the real kernel to complex and do 4x the work (and its backward pass
            # measured 0.2-0.3 s per QM9 step in transposes).
            rows = skip.reshape(-1, skip.shape[-1])
            parts = jnp.dot(
                jnp.concatenate([rows.real, rows.imag]), kernel, precision="highest"
            )
            half = rows.shape[0]
            skip = jax.lax.complex(parts[:half], parts[half:]).reshape(
                *skip.shape[:-1], kernel.shape[-1]
            )
            skip = self.shortcut_norm(skip, training=training, mask=mask)
        if self._ell_out > self._ell_skip:
            skip = _pad_spectral(skip, self._ell_out, pad)
        # The skip's spins in output order (zeros for output spins it lacks), built
        # with split + concatenate, which transpose to each other (indexed updates
        # transpose to pads that are added together).
        pieces = jnp.split(skip, skip.shape[-2], axis=-2)
        source = {index_out: index_in for index_in, index_out in self._skip_pairs}
        missing = jnp.zeros_like(pieces[0])
        skip = jnp.concatenate(
            [
                pieces[source[index_out]] if index_out in source else missing
                for index_out in range(len(self.spins_out))
            ],
            axis=-2,
        )
        return (main + skip) * jnp.asarray(self._mask)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "spins_out": self.spins_out,
                "downsample": self.downsample,
                "upsample": self.upsample,
                "spins_in": self.spins_in,
                "num_filter_params": self.num_filter_params,
                "input_representation": self.input_representation,
                "output_representation": self.output_representation,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
            }
        )
        return config
