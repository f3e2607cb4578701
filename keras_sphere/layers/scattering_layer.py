"""`ScatteringLayer`: fixed wavelet scattering of high-resolution spherical maps."""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_sphere.layers.spins import atomic_build
from keras_sphere.layers.spins import check_jax_backend
from keras_sphere.layers.spins import fix_input_shape
from keras_sphere.layers.transform_state import TransformState
from keras_sphere.sphere import Grid
from keras_sphere.sphere.scattering import OUTPUTS
from keras_sphere.sphere.scattering import ScatteringNetwork
from keras_sphere.sphere.scattering import scattering_transform

__all__ = [
    "NORMALIZATIONS",
    "ScatteringLayer",
    "feature_statistics",
    "scatter_channels",
]

NORMALIZATIONS = (None, "standardize")


def _raise_if_not_finite(all_finite) -> None:
    if not bool(all_finite):
        raise ValueError(
            "ScatteringLayer received maps with NaN or inf values. Clean or mask the "
            "maps first: one NaN spreads to every scattering coefficient."
        )


def _spatial_moments(features: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel E[spherical mean of S] and E[spherical mean of S^2], float64."""
    weights = grid.weights / (4.0 * math.pi)
    mean = np.einsum("bijc,i->c", features, weights, dtype=np.float64)
    squares = np.einsum("bijc,i->c", np.square(features, dtype=np.float64), weights)
    return mean / len(features), squares / len(features)


def _standard_deviation(mean: np.ndarray, mean_square: np.ndarray) -> np.ndarray:
    std = np.sqrt(np.maximum(mean_square - mean**2, 0.0))
    # A channel that never varies keeps its scale instead of dividing by zero.
    return np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)


def feature_statistics(features, grid) -> tuple[np.ndarray, np.ndarray]:
    """The "standardize" statistics of precomputed spatial scattering features.

    The statistics `ScatteringLayer.adapt_features` fits, without a layer: for
    features cached by `scattering_features` before any layer exists.

    Args:
        features: (N, n_s, n_s, C P) spatial features on `grid`.
        grid: the output `Grid` of the scattering network (n_s x n_s).

    Returns:
        (mean, std), float64 (C P,) each.
    """
    features = np.asarray(features)
    grid.check_field_shape(features.shape[:3], "features")
    mean, mean_square = _spatial_moments(features, grid)
    return mean, _standard_deviation(mean, mean_square)


def scatter_channels(maps, network: ScatteringNetwork, output: str, plans=None):
    """Depthwise scattering of channel-last maps.

    Args:
        maps: real, (batch, n_lat, n_lon, C) on `network.grid`.
        network: the `ScatteringNetwork`.
        output: "spatial", "spectral" or "invariant" (`scattering_transform`).
        plans: `network.plans()`, or the layer's plans read from its state.

    Returns:
        (batch, ..., C P): input channel c gives channels c P .. c P + P - 1.
    """
    import jax.numpy as jnp

    batch, channels = maps.shape[0], maps.shape[-1]
    folded = jnp.moveaxis(maps, -1, 1).reshape(-1, *maps.shape[1:3])  # [B C, lat, lon]
    out = scattering_transform(folded, network, output, plans)  # [B C, P, ...]
    out = out.reshape(batch, channels * network.n_paths, *out.shape[2:])
    return jnp.moveaxis(out, 1, -1)


@keras.saving.register_keras_serializable(package="keras_sphere")
class ScatteringLayer(keras.layers.Layer):
    """Wavelet scattering on the sphere (McEwen, Wallis, Mavor-Parker, ICLR 2022).

    Compresses high-resolution real spin-0 maps into a few low-resolution channels per
    input channel with fixed (designed, not learned) axisymmetric scale-discretised
    wavelets: S[p] f = phi * |W^jd ... |W^j1 f|| for every path p of decreasing scales
    (J >= j1 > ... > jd >= J0) of length <= `depth` (``sphere/scattering.py``).
    Wavelets and the low-pass phi are exact per-degree filters, so the output is
    rotation-equivariant up to the aliasing of the modulus (measured relative errors in
    ``tests/layers/test_scattering_layer.py``: ~3e-2 for oversample 1, ~5e-3 for 2).

    Channels are depthwise: input channel c gives output channels c P .. c P + P - 1 in
    the order of `paths`, with P = sum_{d <= depth} C(J - J0 + 1, d) (e.g. 29 for
    L = 1023, J0 = 4, depth 2).

    Args:
        J0: coarsest wavelet scale; outputs are band-limited at B_s = lam^J0 (degrees
            < B_s) and sampled on the n_s x n_s grid, n_s = 2 B_s (at least 4).
        depth: maximal scattering order (2: first and second order).
        oversample: sample each modulus at oversample x the bandlimit of its wavelet
            (1, or 2 for ~6x less aliasing at ~8x the cost of the finest scales).
        normalize: None, or "standardize": subtract a per-channel mean and divide by a
            per-channel standard deviation, both over the sphere and a data set, fitted
            by `adapt` and saved with the model (rotation-invariant statistics, so the
            layer stays equivariant).
        output: "spatial" maps, "spectral" coefficients, or "invariant" spherical means.
        lam: wavelet dilation factor (> 1; 2 is dyadic).
        ell_max: bandlimit L of the analysis; default the input grid's largest.

    Input:
        real maps (batch, n_lat, n_lon, C), or (batch, n_lat, n_lon, 1, C) in the
        library's spatial layout (spin 0), on any grid with `ell_max` <= its
        `max_bandlimit`. Computed in float32 whatever the dtype policy.

    Output (rank follows the input: the spin axis of size 1 is kept for rank 5):
        "spatial": (batch, n_s, n_s, [1,] C P) in the compute dtype;
        "spectral": (batch, B_s, 2 B_s - 1, [1,] C P) complex64, padded layout;
        "invariant": (batch, C P) in the compute dtype.

    Weights: none trainable; with normalize="standardize", two non-trainable (C P,)
    statistics. Transform tables are layer state, neither saved nor counted.

    Example:
        >>> layer = ScatteringLayer(J0=2)
        >>> layer(np.zeros((2, 32, 32, 3), "float32")).shape
        (2, 8, 8, 33)
    """

    def __init__(
        self,
        J0: int,  # noqa: N803
        depth: int = 2,
        oversample: int = 1,
        normalize: str | None = None,
        output: str = "spatial",
        lam: float = 2.0,
        ell_max: int | None = None,
        **kwargs,
    ):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        check_jax_backend(type(self).__name__)
        if isinstance(J0, bool) or int(J0) != J0 or J0 < 0:
            raise ValueError(f"J0 must be an integer >= 0. Received: J0={J0!r}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(
                f"normalize must be one of {NORMALIZATIONS}. "
                f"Received: normalize={normalize!r}"
            )
        if output not in OUTPUTS:
            raise ValueError(
                f"output must be one of {OUTPUTS}. Received: output={output!r}"
            )
        self.J0 = int(J0)
        self.depth = depth
        self.oversample = oversample
        self.normalize = normalize
        self.output_format = output
        self.lam = float(lam)
        self.ell_max = None if ell_max is None else int(ell_max)
        # Validate depth, oversample and lam now rather than at build.
        probe = Grid.for_bandlimit(max(1, 2 * math.ceil(self.lam**self.J0)))
        ScatteringNetwork(
            probe, probe.max_bandlimit, self.J0, depth, self.lam, oversample
        )

    # -- structure ---------------------------------------------------------------------

    def _network_for(self, input_shape) -> ScatteringNetwork:
        if len(input_shape) not in (4, 5) or (
            len(input_shape) == 5 and input_shape[3] != 1
        ):
            raise ValueError(
                f"{self.name} expects real spin-0 maps (batch, n_lat, n_lon, channels) "
                "or (batch, n_lat, n_lon, 1, channels). "
                f"Received shape {tuple(input_shape)}."
            )
        if input_shape[1] is None or input_shape[2] is None:
            raise ValueError(
                f"{self.name} needs a fixed grid: n_lat and n_lon must be known. "
                f"Received shape {tuple(input_shape)}."
            )
        grid = Grid(int(input_shape[1]), int(input_shape[2]))
        ell_max = grid.max_bandlimit if self.ell_max is None else self.ell_max
        return ScatteringNetwork(
            grid, ell_max, self.J0, self.depth, self.lam, self.oversample
        )

    @property
    def network(self) -> ScatteringNetwork:
        """The `ScatteringNetwork` (after the layer is built)."""
        if not self.built:
            raise ValueError(
                f"{self.name} is not built yet: call it on maps or build it first."
            )
        return self._network

    @property
    def paths(self) -> tuple[tuple[int, ...], ...]:
        """Scattering paths in output-channel order (per input channel)."""
        return self.network.paths

    @property
    def bandlimits(self) -> tuple[int, ...]:
        """Inclusive bandlimit at which each path's propagated field is computed."""
        return self.network.path_bandlimits

    @atomic_build
    def build(self, input_shape):
        self._network = self._network_for(input_shape)
        fix_input_shape(self, input_shape)
        self._channels = int(input_shape[-1])
        self._states = tuple(
            TransformState(
                self,
                grid,
                ell,
                (0,),
                name=f"scattering_{grid.n_lat}x{grid.n_lon}_L{ell}",
                method="plan",  # the scattering network runs on SHTPlans
            )
            for grid, ell in self._network.transform_keys
        )
        n_out = self._channels * self._network.n_paths
        if self.normalize == "standardize":
            self.feature_mean = self.add_weight(
                shape=(n_out,),
                initializer="zeros",
                trainable=False,
                name="feature_mean",
            )
            self.feature_std = self.add_weight(
                shape=(n_out,), initializer="ones", trainable=False, name="feature_std"
            )

    def compute_output_shape(self, input_shape):
        network = self._network_for(input_shape)
        batch, rank = input_shape[0], len(input_shape)
        channels = (
            None if input_shape[-1] is None else input_shape[-1] * network.n_paths
        )
        if self.output_format == "invariant":
            return (batch, channels)
        size = network.output_bandlimit + 1
        if self.output_format == "spatial":
            axes = network.output_grid.shape
        else:
            axes = (size, 2 * size - 1)
        return (batch, *axes, *((1,) if rank == 5 else ()), channels)

    def compute_output_spec(self, inputs):
        shape = self.compute_output_shape(inputs.shape)
        dtype = "complex64" if self.output_format == "spectral" else self.compute_dtype
        return keras.KerasTensor(shape, dtype=dtype)

    # -- computation -------------------------------------------------------------------

    def _check_input(self, inputs):
        import jax
        import jax.numpy as jnp

        if jnp.issubdtype(inputs.dtype, jnp.complexfloating):
            raise TypeError(
                f"{self.name} takes real spin-0 maps; received dtype {inputs.dtype}. "
                "Pass the real part if the imaginary part is zero."
            )
        all_finite = jnp.all(jnp.isfinite(inputs))
        if isinstance(inputs, jax.core.Tracer):
            # Inside fit/predict: raise from the running program.
            jax.debug.callback(_raise_if_not_finite, all_finite)
        else:
            _raise_if_not_finite(all_finite)

    def _raw(self, inputs, output: str):
        """Unnormalised `output`, channel axis last, (batch, ..., C P)."""
        import jax.numpy as jnp

        network = self._network
        x = jnp.asarray(inputs)
        self._check_input(x)
        if x.ndim == 5:
            x = x[..., 0, :]
        plans = tuple(state.plan(0) for state in self._states)
        return scatter_channels(x.astype(jnp.float32), network, output, plans)

    def call(self, inputs):
        import jax.numpy as jnp

        out = self._raw(inputs, self.output_format)
        if self.normalize == "standardize":
            mean = jnp.asarray(self.feature_mean.value, jnp.float32)
            std = jnp.asarray(self.feature_std.value, jnp.float32)
            if self.output_format == "spectral":
                # Subtracting a constant map changes only a_00 (by mean sqrt(4 pi)).
                size = out.shape[1]
                monopole = jnp.zeros((size, 2 * size - 1), jnp.float32)
                monopole = monopole.at[0, size - 1].set(math.sqrt(4.0 * math.pi))
                out = out - monopole[:, :, None] * mean
            else:
                out = out - mean
            out = out / std
        if inputs.ndim == 5 and self.output_format != "invariant":
            out = out[..., None, :]
        if self.output_format == "spectral":
            return out.astype(jnp.complex64)
        return out.astype(self.compute_dtype)

    # -- normalisation -----------------------------------------------------------------

    def adapt(self, data, batch_size: int = 8, steps: int | None = None, verbose=1):
        """Fit the "standardize" statistics to a data set.

        Per output channel: mean = E[spherical mean of S], std = sqrt(E[spherical
        mean of (S - mean)^2]) over the data, computed exactly from the harmonic
        coefficients (Parseval) and accumulated in float64.

        Args:
            data: maps (N, n_lat, n_lon, C) or (N, n_lat, n_lon, 1, C) (NumPy or a
                memory map), or an iterable of such batches (or of (maps, ...) tuples).
            batch_size: maps per step when `data` is an array.
            steps: stop after this many batches (default: all).
            verbose: 1 shows a progress bar, 0 is silent.

        Raises:
            ValueError: if the layer has no "standardize" normalisation or the data
                is empty.
        """
        if self.normalize != "standardize":
            raise ValueError(
                f"{self.name}.adapt fits the 'standardize' statistics; this layer has "
                f"normalize={self.normalize!r}. Build it with normalize='standardize'."
            )
        batches, total = _batches(data, batch_size, steps)
        progress = keras.utils.Progbar(total, verbose=verbose, unit_name="batch")
        count, sums, squares = 0, 0.0, 0.0
        for index, batch in enumerate(batches):
            if not self.built:
                self.build(np.shape(batch))
            coeffs = np.asarray(self._raw(batch, "spectral"), np.complex128)
            if coeffs.ndim == 4:  # [B, ell, m, C P]
                coeffs = coeffs[..., None, :]
            size = coeffs.shape[1]
            # Spherical mean a_00 / sqrt(4 pi) and mean square sum |a|^2 / (4 pi).
            sums = sums + np.sum(coeffs[:, 0, size - 1, 0].real, axis=0)
            squares = squares + np.sum(np.abs(coeffs) ** 2, axis=(0, 1, 2, 3))
            count += coeffs.shape[0]
            progress.update(index + 1)
        if count == 0:
            raise ValueError("adapt received no data.")
        mean = sums / (count * math.sqrt(4.0 * math.pi))
        self._set_statistics(mean, squares / (count * 4.0 * math.pi))

    def adapt_features(self, features) -> None:
        """Fit the "standardize" statistics to precomputed spatial features.

        For features cached with `scattering_features(..., output="spatial")` (the
        unnormalised output of this layer): the same statistics as `adapt`, with the
        spherical means taken by the output grid's quadrature, which is exact for
        the squares of fields at the output bandlimit.

        Args:
            features: (N, n_s, n_s, C P) or (N, n_s, n_s, 1, C P) spatial features.

        Raises:
            ValueError: without "standardize" normalisation, or for features whose
                grid or channel count is not this layer's output.
        """
        if self.normalize != "standardize":
            raise ValueError(
                f"{self.name}.adapt_features fits the 'standardize' statistics; this "
                f"layer has normalize={self.normalize!r}."
            )
        if not self.built:
            raise ValueError(
                f"{self.name} must be built (called on maps) before adapt_features, "
                "so that its output grid is known."
            )
        features = np.asarray(features)
        if features.ndim == 5 and features.shape[3] == 1:
            features = features[:, :, :, 0, :]
        grid = self._network.output_grid
        expected = (*grid.shape, int(self.feature_mean.shape[0]))
        if features.ndim != 4 or features.shape[1:] != expected or not len(features):
            raise ValueError(
                f"{self.name}.adapt_features expects spatial features (N, "
                f"{expected[0]}, {expected[1]}, {expected[2]}), N >= 1. Received "
                f"shape {features.shape}."
            )
        self._set_statistics(*_spatial_moments(features, grid))

    def _set_statistics(self, mean: np.ndarray, mean_square: np.ndarray) -> None:
        std = _standard_deviation(mean, mean_square)
        self.feature_mean.assign(mean.astype(self.feature_mean.dtype))
        self.feature_std.assign(std.astype(self.feature_std.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "J0": self.J0,
                "depth": self.depth,
                "oversample": self.oversample,
                "normalize": self.normalize,
                "output": self.output_format,
                "lam": self.lam,
                "ell_max": self.ell_max,
            }
        )
        return config


def _batches(data, batch_size: int, steps: int | None):
    """(iterator over batches, number of batches or None) for arrays or iterables."""
    if hasattr(data, "shape") and hasattr(data, "__getitem__"):
        n_batches = -(-len(data) // batch_size)
        if steps is not None:
            n_batches = min(n_batches, steps)
        iterator = (
            np.asarray(data[i * batch_size : (i + 1) * batch_size])
            for i in range(n_batches)
        )
        return iterator, n_batches

    def from_iterable():
        for index, item in enumerate(data):
            if steps is not None and index >= steps:
                return
            yield np.asarray(item[0] if isinstance(item, tuple | list) else item)

    return from_iterable(), steps
