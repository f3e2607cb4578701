"""The twelve QM9 targets: labels, units and the per-target recipe, as data.

The recipe (aggregation and tail per target) is the anchor's documented list
(google-research/spherical-cnn at 5d351d3, ``models.md`` section 1.5); ``gap`` is
missing there and takes the energies' recipe. Labels are TFDS ``qm9`` feature names;
U0, U, H and G are atomization energies. Values are in QM9's units; `REPORT_UNITS`
converts to the literature's (meV for energies).
"""

from __future__ import annotations

__all__ = [
    "HARTREE_IN_MEV",
    "TARGETS",
    "TARGET_NAMES",
    "to_report_units",
]

HARTREE_IN_MEV = 27211.4  # 1 Ha in meV, as in the anchor and the literature tables

_ENERGY = {"unit": "Ha", "report_unit": "meV", "report_scale": HARTREE_IN_MEV}
_DEEPSETS = {"tail": "deepsets", "aggregation": "weighted_by_atom_type"}

# name -> label feature (TFDS qm9), unit, report unit and scale, tail, aggregation.
TARGETS: dict[str, dict] = {
    "mu": {
        "label": "mu",
        "unit": "D",
        "report_unit": "D",
        "report_scale": 1.0,
        "tail": "deepsets",
        "aggregation": "weighted_displacement",
    },
    "alpha": {
        "label": "alpha",
        "unit": "a0^3",
        "report_unit": "a0^3",
        "report_scale": 1.0,
        "tail": "transformer",
        "aggregation": "weighted_by_atom_type",
    },
    "homo": {"label": "homo", **_ENERGY, **_DEEPSETS},
    "lumo": {"label": "lumo", **_ENERGY, **_DEEPSETS},
    "gap": {"label": "gap", **_ENERGY, **_DEEPSETS},
    "r2": {
        "label": "r2",
        "unit": "a0^2",
        "report_unit": "a0^2",
        "report_scale": 1.0,
        "tail": "transformer",
        "aggregation": "weighted_by_distance_squared",
    },
    "zpve": {"label": "zpve", **_ENERGY, **_DEEPSETS},
    "U0": {"label": "U0_atomization", **_ENERGY, **_DEEPSETS},
    "U": {"label": "U_atomization", **_ENERGY, **_DEEPSETS},
    "H": {"label": "H_atomization", **_ENERGY, **_DEEPSETS},
    "G": {"label": "G_atomization", **_ENERGY, **_DEEPSETS},
    "Cv": {
        "label": "Cv",
        "unit": "cal/(mol K)",
        "report_unit": "cal/(mol K)",
        "report_scale": 1.0,
        **_DEEPSETS,
    },
}
TARGET_NAMES = tuple(TARGETS)


def to_report_units(name: str, value):
    """`value` of target `name` (QM9 units) in the literature's units."""
    return value * TARGETS[name]["report_scale"]
