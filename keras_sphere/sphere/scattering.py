"""Wavelet scattering on the sphere with axisymmetric wavelets.

The fixed network of McEwen, Wallis and Mavor-Parker (ICLR 2022), ``scattering.md``
sections 4-5.

For a real spin-0 field f and a path p = (j1, ..., jd) of decreasing wavelet scales
(J >= j1 > j2 > ... >= J0), the propagator is U[p] f = |W^jd ... |W^j1 f|| and the
scattering coefficient S[p] f = phi * U[p] f, the low-pass of the propagated field at
the scaling bandlimit B_phi = lam^J0; S[()] f = phi * f. Wavelet and low-pass filters
multiply harmonic coefficients by real kernels per degree (``wavelets.py``), so they
commute with rotations; the only approximation is the modulus, whose output is not
band-limited and is projected back onto the bandlimit of the grid it is sampled on
(aliasing, reduced by `oversample`).

Multiresolution: the child of a node at bandlimit B_p through scale j is computed at
B_b = min(B_j, B_p) (wavelet j has no energy above B_j), and |W| is sampled on the model
grid of bandlimit B_w = oversample * B_b. With lam = 2 only the two finest scales run at
the full bandlimit; each coarser one is ~8x cheaper.

Shapes are static: the path tree is fixed by (ell_max, J0, depth, lam, oversample), so
`scattering_transform` is one jit-compiled program whose tables (one `SHTPlan` per
bandlimit) are arguments, never constants.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.sht import pad
from keras_sphere.sphere.sht_plan import SHTPlan
from keras_sphere.sphere.sht_plan import sht_plan
from keras_sphere.sphere.wavelets import WaveletFilterBank
from keras_sphere.sphere.wavelets import apply_kernel
from keras_sphere.sphere.wavelets import map_grid
from keras_sphere.sphere.wavelets import wavelet_filters

__all__ = ["OUTPUTS", "ScatteringNetwork", "scattering_transform"]

OUTPUTS = ("spatial", "spectral", "invariant")


@dataclasses.dataclass(frozen=True)
class ScatteringNode:
    """One node of the path tree.

    Attributes:
        path: scales (j1, ..., jd) from the root; () for the input itself.
        parent: index of the parent node (-1 for the root).
        band: inclusive degree the parent's coefficients are cut to before the wavelet.
        work: inclusive bandlimit of the grid |W| is sampled on, and of U[path].
    """

    path: tuple[int, ...]
    parent: int
    band: int
    work: int

    @property
    def scale(self) -> int:
        return self.path[-1]


@dataclasses.dataclass(frozen=True)
class ScatteringNetwork:
    """The static structure of a scattering transform on one input grid.

    Args:
        grid: the `Grid` the input maps are sampled on.
        ell_max: inclusive bandlimit L of the analysis (<= `grid.max_bandlimit`).
        J0: coarsest wavelet scale, 0 <= J0 < J (`wavelets.finest_scale`).
        depth: maximal path length (2: first and second order).
        lam: wavelet dilation factor.
        oversample: |W| of a node of bandlimit B_b is sampled at bandlimit
            oversample * B_b (1: s2wav's multiresolution; 2 reduces aliasing of the
            modulus about 6x at ~8x the cost of the full-resolution scales).

    Raises:
        ValueError: for J0 outside [0, J), depth < 0, oversample < 1, or ell_max above
            the grid's limit.
    """

    grid: Grid
    ell_max: int
    J0: int
    depth: int = 2
    lam: float = 2.0
    oversample: int = 1

    def __post_init__(self):
        self.grid.check_bandlimit(self.ell_max)
        if isinstance(self.depth, bool) or int(self.depth) != self.depth:
            raise ValueError(f"depth must be an integer. Received: depth={self.depth}")
        if self.depth < 0:
            raise ValueError(f"depth must be >= 0. Received: depth={self.depth}")
        if int(self.oversample) != self.oversample or self.oversample < 1:
            raise ValueError(
                "oversample must be an integer >= 1 (1, 2 or 4 in practice). "
                f"Received: oversample={self.oversample}"
            )
        self.filters  # validates J0 against the bandlimit  # noqa: B018

    @functools.cached_property
    def filters(self) -> WaveletFilterBank:
        return wavelet_filters(self.ell_max, self.J0, self.lam)

    @functools.cached_property
    def nodes(self) -> tuple[ScatteringNode, ...]:
        """Nodes in output order: by depth, then by parent, then by scale."""
        bank = self.filters
        scale_band = dict(zip(bank.scales, bank.scale_bandlimits, strict=True))
        nodes = [ScatteringNode((), -1, self.ell_max, self.ell_max)]
        level = [0]
        for _ in range(self.depth):
            next_level = []
            for index in level:
                parent = nodes[index]
                top = parent.scale - 1 if parent.path else bank.J
                for scale in range(bank.J0, top + 1):
                    band = min(scale_band[scale], parent.work)
                    work = self.oversample * (band + 1) - 1
                    nodes.append(
                        ScatteringNode((*parent.path, scale), index, band, work)
                    )
                    next_level.append(len(nodes) - 1)
            level = next_level
        return tuple(nodes)

    @property
    def paths(self) -> tuple[tuple[int, ...], ...]:
        """Paths in output-channel order: (), (J0,), ..., (J,), (j1, j2), ..."""
        return tuple(node.path for node in self.nodes)

    @property
    def path_bandlimits(self) -> tuple[int, ...]:
        """Inclusive bandlimit at which U[path] is computed, per path."""
        return tuple(node.work for node in self.nodes)

    @property
    def n_paths(self) -> int:
        """P, the output channels per input channel: sum_d C(J - J0 + 1, d)."""
        return len(self.nodes)

    @property
    def output_bandlimit(self) -> int:
        """Inclusive bandlimit L_s = B_phi - 1 of the outputs."""
        return self.filters.scaling_bandlimit

    @property
    def output_grid(self) -> Grid:
        """Grid of spatial outputs: `wavelets.map_grid(output_bandlimit)`."""
        return map_grid(self.output_bandlimit)

    @property
    def transform_keys(self) -> tuple[tuple[Grid, int], ...]:
        """(grid, ell_max) of every SHT plan `scattering_transform` needs.

        In order: the input grid, each working bandlimit, the output grid.
        """
        keys = [(self.grid, self.ell_max)]
        for node in self.nodes[1:]:
            keys.append((map_grid(node.work), node.work))
        keys.append((self.output_grid, max(self.output_bandlimit, 1)))
        return tuple(dict.fromkeys(keys))

    def plans(self, dtype: str = "float32") -> tuple[SHTPlan, ...]:
        """The cached `SHTPlan` of every entry of `transform_keys`."""
        return tuple(sht_plan(grid, ell, 0, dtype) for grid, ell in self.transform_keys)

    def table_bytes(self, dtype: str = "float32") -> int:
        """Approximate memory of the transform tables, in bytes (from their layout)."""
        itemsize = np.dtype(dtype).itemsize
        total = 0
        for grid, ell in self.transform_keys:
            n_rows = (grid.n_lat + 1) // 2
            total += (ell + 1) * (ell + 2) // 2 * n_rows * itemsize
        return total


def _scatter(plans, maps, network: ScatteringNetwork, output: str):
    """See `scattering_transform`."""
    plan_of = dict(zip(network.transform_keys, plans, strict=True))
    bank = network.filters
    nodes = network.nodes
    n_maps = maps.shape[0]
    coeffs = [plan_of[(network.grid, network.ell_max)].forward(maps)]
    for depth in range(1, network.depth + 1):
        members = [i for i, node in enumerate(nodes) if len(node.path) == depth]
        groups: dict[tuple[int, int], list[int]] = {}
        for index in members:
            groups.setdefault((nodes[index].band, nodes[index].work), []).append(index)
        computed = {}
        # Nodes sharing a bandlimit are transformed together: one pass over the tables.
        for (band, work), indices in groups.items():
            parts = [
                apply_kernel(coeffs[nodes[i].parent], bank.kernel(nodes[i].scale), band)
                for i in indices
            ]
            stacked = pad(jnp.concatenate(parts, axis=0), work)
            plan = plan_of[(map_grid(work), work)]
            # W is real: real kernels keep a_ell,-m = (-1)^m conj(a_ell,m).
            modulus = jnp.abs(plan.inverse(stacked, is_real=True))
            propagated = plan.forward(modulus)
            for k, i in enumerate(indices):
                computed[i] = propagated[k * n_maps : (k + 1) * n_maps]
        coeffs.extend(computed[i] for i in members)
    ell_out = network.output_bandlimit
    low = jnp.stack([apply_kernel(c, bank.scaling, ell_out) for c in coeffs], axis=1)
    if output == "spectral":
        return low  # [N, P, L_s + 1, 2 L_s + 1]
    if output == "invariant":
        # Spherical mean = a_00 / sqrt(4 pi).
        return low[..., 0, ell_out].real / math.sqrt(4.0 * math.pi)  # [N, P]
    ell_grid = max(ell_out, 1)
    plan = plan_of[(network.output_grid, ell_grid)]
    return plan.inverse(pad(low, ell_grid), is_real=True)  # [N, P, n_s, n_s]


_scatter_jit = jax.jit(_scatter, static_argnames=("network", "output"))


def scattering_transform(
    maps,
    network: ScatteringNetwork,
    output: str = "spatial",
    plans: tuple[SHTPlan, ...] | None = None,
):
    """Scattering coefficients S[p] f of real spin-0 maps for every path p.

    Args:
        maps: real array, shape (N, n_lat, n_lon) on `network.grid`: float32 (or
            float64 with ``jax_enable_x64``, which then computes in float64).
        network: the `ScatteringNetwork`.
        output: "spatial": maps (N, P, n_s, n_s) on `network.output_grid`;
            "spectral": coefficients (N, P, L_s + 1, 2 L_s + 1), complex, padded layout;
            "invariant": spherical means (N, P), rotation-invariant.
        plans: `network.plans(dtype)`; pass them when calling from inside ``jax.jit``
            so that the tables are arguments of the compiled program.

    Returns:
        As described for `output`; P = `network.n_paths` in the order of
        `network.paths`.
    """
    if output not in OUTPUTS:
        raise ValueError(
            f"output must be one of {OUTPUTS}. Received: output={output!r}"
        )
    maps = jnp.asarray(maps)
    if jnp.issubdtype(maps.dtype, jnp.complexfloating):
        raise TypeError(
            "Scattering takes real spin-0 maps. Received a complex array; pass its "
            "real part if the imaginary part is zero."
        )
    dtype = "float64" if maps.dtype == jnp.float64 else "float32"
    maps = maps.astype(dtype)
    if plans is None:
        plans = network.plans(dtype)
    return _scatter_jit(plans, maps, network=network, output=output)
