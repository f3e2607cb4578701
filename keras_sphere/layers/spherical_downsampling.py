"""`SphericalDownsampling`: exact spectral downsampling of spatial spin fields."""

from __future__ import annotations

import keras

from keras_sphere.layers.phase_collapse import check_rank5_spins
from keras_sphere.layers.spherical_upsampling import SphericalUpsampling
from keras_sphere.sphere import Grid

__all__ = ["SphericalDownsampling"]


@keras.saving.register_keras_serializable(package="keras_sphere")
class SphericalDownsampling(SphericalUpsampling):
    """Spectral pooling: analyse up to L_out, synthesise on a coarser grid.

    The input grid must be the square model grid of some bandlimit L,
    2 (L + 1) x 2 (L + 1) (`Grid.for_bandlimit`), with L + 1 divisible by `factor`.
    The output keeps the degrees up to L_out = (L + 1) / factor - 1 exactly and
    drops the ones above (the spherical counterpart of an ideal low-pass filter
    before subsampling), sampled on the 2 (L_out + 1) square grid: a field already
    band-limited to L_out comes out unchanged, and the layer is exactly
    SO(3)-equivariant. `SphericalUpsampling` with the same factor is its right
    inverse; it shares that layer's build, call and config, differing only in the
    grids. SHT tables are layer state (`TransformState`), not weights.

    No weights.

    Args:
        spins: ordered spins of the input's spin axis.
        factor: integer downsampling factor >= 1 per side.

    Call arguments:
        inputs: spatial (batch, 2 (L + 1), 2 (L + 1), S, C), complex, or real when
            every spin is 0.

    Returns:
        (batch, 2 (L_out + 1), 2 (L_out + 1), S, C): complex64 for complex input;
        for real input a real tensor in the layer's compute dtype.

    Example:
        >>> downsample = SphericalDownsampling(spins=(0, 1), factor=2)
        >>> downsample(np.zeros((2, 16, 16, 2, 3), "complex64")).shape
        (2, 8, 8, 2, 3)
    """

    def _grids(self, input_shape) -> tuple[Grid, int, Grid, int]:
        check_rank5_spins(self.name, input_shape, self.spins)
        grid_in = Grid(int(input_shape[1]), int(input_shape[2]))
        ell_in = grid_in.max_bandlimit
        if grid_in.shape != Grid.for_bandlimit(ell_in).shape:
            raise ValueError(
                f"{self.name} needs a square model grid 2 (L + 1) x 2 (L + 1); "
                f"received {grid_in.n_lat} x {grid_in.n_lon}."
            )
        if (ell_in + 1) % self.factor:
            raise ValueError(
                f"{self.name}: factor={self.factor} must divide L + 1 = {ell_in + 1} "
                f"of the {grid_in.n_lat} x {grid_in.n_lon} grid."
            )
        ell_out = (ell_in + 1) // self.factor - 1
        largest_spin = max(abs(spin) for spin in self.spins)
        if ell_out < largest_spin:
            raise ValueError(
                f"{self.name}: downsampling by {self.factor} keeps degrees up to "
                f"{ell_out}, below |spin| = {largest_spin} of spins={self.spins}."
            )
        return grid_in, ell_in, Grid.for_bandlimit(ell_out), ell_out
