"""`QM9Backbone`: per-atom rotation-invariant features of molecules.

The residual spin-spherical CNN of "Scaling Spherical CNNs" (Esteves et al., ICML
2023; ``models.md`` section 1.3), run on the spheres of the real atoms only:

    positions (B, 29, 3) Angstrom, charges (B, 29)
    -> MoleculeFeaturizer: spheres of the real atoms, packed across the batch
       (capacity, 32, 32, 1, 10)
    -> block 0: SpinSphericalConv (0) -> (0, 1), SpectralBatchNorm, PhaseCollapse
    -> SphericalResBlocks (spectral pooling where the resolution halves)
    -> InvariantReadout ("molecules": |mean| of spin 0, mean |x| of spin 1)
    -> ScatterAtoms: (B, 29, 2 * widths[-1]), zero for padded atoms.

Batch norm statistics are taken over the real atoms of the batch. Blocks pass
coefficients to each other (the same network as passing grids; see
`SphericalResBlock`'s ``input_representation``).
"""

from __future__ import annotations

import keras
import keras_hub

from keras_sphere.layers import InvariantReadout
from keras_sphere.layers import PhaseCollapse
from keras_sphere.layers import SpectralBatchNorm
from keras_sphere.layers import SphericalResBlock
from keras_sphere.layers import SpinSphericalConv
from keras_sphere.models.qm9.atom_scatter import ScatterAtoms
from keras_sphere.models.qm9.molecule_featurizer import MAX_ATOMS
from keras_sphere.models.qm9.molecule_featurizer import MoleculeFeaturizer
from keras_sphere.models.qm9.molecule_featurizer import atom_capacity

__all__ = ["QM9Backbone"]

_SPINS = (0, 1)


@keras.saving.register_keras_serializable(package="keras_sphere")
class QM9Backbone(keras_hub.models.Backbone):
    """Per-atom invariant features from a spin-spherical residual CNN.

    Args:
        widths: channels of block 0 and of each residual block; the anchor's default
            is (64, 128, 128, 256, 256).
        resolutions: grid size n of each block's output, starting with block 0;
            each entry equals or halves the one before; the first is the
            featuriser's grid. Default (32, 16, 16, 8, 8).
        num_filter_params: anchors of each block's localized filters (None: full
            filters). Default (8, 8, 8, 4, 4).
        atoms_per_molecule: atom slots per molecule of a batch (see
            `MoleculeFeaturizer`); 29 never overflows.
        dtype: dtype policy.

    Inputs: dict with "positions" float32 (batch, 29, 3) in Angstrom and "charges"
    int32 (batch, 29) nuclear charges (H 1, C 6, N 7, O 8, F 9; 0 for padding).
    Output: float32 (batch, 29, 2 * widths[-1]) per-atom invariant features, zero
    for padded atoms.
    """

    def __init__(
        self,
        widths=(64, 128, 128, 256, 256),
        resolutions=(32, 16, 16, 8, 8),
        num_filter_params=(8, 8, 8, 4, 4),
        atoms_per_molecule: float = float(MAX_ATOMS),
        dtype=None,
        **kwargs,
    ):
        widths = tuple(int(w) for w in widths)
        resolutions = tuple(int(n) for n in resolutions)
        num_filter_params = tuple(
            None if p is None else int(p) for p in num_filter_params
        )
        _check_blocks(widths, resolutions, num_filter_params)
        positions = keras.Input((MAX_ATOMS, 3), name="positions")
        charges = keras.Input((MAX_ATOMS,), dtype="int32", name="charges")
        featurizer = MoleculeFeaturizer(
            resolutions[0], atoms_per_molecule, name="featurizer", dtype=dtype
        )
        packed = featurizer(positions, charges)
        valid = packed["valid"]
        x = SpinSphericalConv(
            widths[0],
            (0,),
            _SPINS,
            num_filter_params=num_filter_params[0],
            output_representation="spectral",
            name="conv_0",
            dtype=dtype,
        )(packed["spheres"])
        x = SpectralBatchNorm(_SPINS, name="norm_0", dtype=dtype)(x, mask=valid)
        # Block 0's output only feeds block 1's forward transform, so the collapse
        # returns coefficients, pooled to block 1's bandlimit (its spectral pooling
        # moves here).
        x = PhaseCollapse(
            _SPINS,
            representation="spectral",
            ell_max_out=resolutions[1] // 2 - 1,
            name="collapse_0",
            dtype=dtype,
        )(x)
        for block in range(1, len(widths)):
            x = SphericalResBlock(
                widths[block],
                spins_out=_SPINS,
                spins_in=_SPINS,
                downsample=block > 1 and resolutions[block] < resolutions[block - 1],
                num_filter_params=num_filter_params[block],
                input_representation="spectral",
                output_representation="spectral",
                name=f"block_{block}",
                dtype=dtype,
            )(x, mask=valid)
        features = InvariantReadout(
            _SPINS,
            mode="molecules",
            input_representation="spectral",
            name="readout",
            dtype=dtype,
        )(x, mask=valid)
        atom_features = ScatterAtoms(name="scatter_atoms", dtype=dtype)(
            features, packed["flat_index"], valid, packed["overflow"], charges
        )
        super().__init__(
            inputs={"positions": positions, "charges": charges},
            outputs=atom_features,
            dtype=dtype,
            **kwargs,
        )
        self.widths = widths
        self.resolutions = resolutions
        self.num_filter_params = num_filter_params
        self.atoms_per_molecule = float(atoms_per_molecule)

    @property
    def feature_width(self) -> int:
        return 2 * self.widths[-1]

    def atom_capacity(self, batch_size: int) -> int:
        """Atom slots of a batch of `batch_size` molecules (its largest atom sum)."""
        return atom_capacity(batch_size, self.atoms_per_molecule)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "widths": list(self.widths),
                "resolutions": list(self.resolutions),
                "num_filter_params": list(self.num_filter_params),
                "atoms_per_molecule": self.atoms_per_molecule,
            }
        )
        return config


def _check_blocks(widths, resolutions, num_filter_params) -> None:
    if not len(widths) == len(resolutions) == len(num_filter_params) >= 2:
        raise ValueError(
            "widths, resolutions and num_filter_params need one entry per block "
            "(block 0 and at least one residual block). Received "
            f"widths={widths}, resolutions={resolutions}, "
            f"num_filter_params={num_filter_params}."
        )
    for before, after in zip(resolutions, resolutions[1:], strict=False):
        if after not in (before, before // 2) or after < 4 or after % 2:
            raise ValueError(
                "Each resolution must equal or halve the one before it and stay an "
                f"even number >= 4. Received: resolutions={resolutions}"
            )
