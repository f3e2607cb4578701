import math

import numpy as np
import pytest

import keras_sphere  # noqa: F401
from keras_sphere.models.qm9 import MoleculeFeaturizer
from keras_sphere.models.qm9.molecule_featurizer import R_MIN_ANGSTROM
from keras_sphere.models.qm9.molecule_featurizer import pack_atoms
from keras_sphere.sphere import Grid


def reference_spheres(positions, charges, n=32, cone=math.pi / 4):
    """models.md 1.2 written out atom by atom in float64 (padded layout)."""
    grid = Grid(n, n)
    theta, phi = np.meshgrid(grid.theta, grid.phi, indexing="ij")
    x = np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1
    )
    sigma2 = (1 - math.cos(cone)) ** 2 / math.log(20)
    out = np.zeros((*charges.shape, n, n, 10))
    for b in range(charges.shape[0]):
        for i in np.flatnonzero(charges[b]):
            for j in np.flatnonzero(charges[b]):
                if i == j:
                    continue
                d = positions[b, j].astype(np.float64) - positions[b, i]
                r = np.linalg.norm(d)
                bump = np.exp(-((x @ (d / r) - 1) ** 2) / sigma2)
                z = (1, 6, 7, 8, 9).index(charges[b, j])
                for p_index, p in enumerate((2, 6)):
                    w = charges[b, i] * charges[b, j] / r**p / (81 / R_MIN_ANGSTROM**p)
                    out[b, i, :, :, p_index * 5 + z] += w * bump
    return out


def padded(features, charges):
    """(capacity, n, n, 1, C) packed spheres -> (batch, 29, n, n, C)."""
    spheres = np.asarray(features["spheres"])[..., 0, :]
    valid = np.asarray(features["valid"]) > 0
    index = np.asarray(features["flat_index"])[valid]
    out = np.zeros((charges.size, *spheres.shape[1:]), np.float32)
    out[index] = spheres[valid]
    return out.reshape(*charges.shape, *spheres.shape[1:])


def test_matches_the_formula_atom_by_atom(molecules):
    positions, charges = molecules
    features = MoleculeFeaturizer(atoms_per_molecule=20)(positions, charges)
    assert features["spheres"].dtype == "float32"
    assert features["spheres"].shape == (max(29, 6 * 20), 32, 32, 1, 10)
    expected = reference_spheres(positions, charges)
    actual = padded(features, charges)
    # float32 arithmetic on values of order 1: 1e-5 relative to the largest value.
    np.testing.assert_allclose(actual, expected, atol=1e-5 * np.abs(expected).max())
    assert not bool(features["overflow"])


def test_two_atom_oracle_cone_and_channels():
    # The anchor's test: inside the cone > 4.99% of the peak, outside < 5.01%;
    # absent types and self-interaction give zero.
    positions = np.zeros((1, 29, 3), np.float32)
    positions[0, 1] = (0.3, -0.2, 1.1)
    charges = np.zeros((1, 29), np.int32)
    charges[0, :2] = (6, 8)  # C sees O, O sees C
    features = MoleculeFeaturizer()(positions, charges)
    spheres = padded(features, charges)[0]  # [atom, n, n, C]
    grid = Grid(32, 32)
    theta, phi = np.meshgrid(grid.theta, grid.phi, indexing="ij")
    x = np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1
    )
    bond = positions[0, 1] / np.linalg.norm(positions[0, 1])
    for atom, seen_type, direction in ((0, 3, bond), (1, 1, -bond)):
        for p_index, p in enumerate((2, 6)):
            channel = p_index * 5 + seen_type
            r = np.linalg.norm(positions[0, 1])
            peak = 6 * 8 / r**p / (81 / R_MIN_ANGSTROM**p)
            ratio = spheres[atom, :, :, channel] / peak
            angle = np.arccos(np.clip(x @ direction, -1, 1))
            assert np.all(ratio[angle < math.pi / 4 - 1e-6] > 0.0499)
            assert np.all(ratio[angle > math.pi / 4 + 1e-6] < 0.0501)
        others = [c for c in range(10) if c % 5 != seen_type]
        assert np.all(spheres[atom, :, :, others] == 0)
    assert np.all(spheres[2:] == 0)


def test_translation_invariant(molecules):
    positions, charges = molecules
    layer = MoleculeFeaturizer()
    shifted = positions + np.float32([3.0, -7.5, 12.25]) * (charges > 0)[..., None]
    a = np.asarray(layer(positions, charges)["spheres"])
    b = np.asarray(layer(shifted, charges)["spheres"])
    # Differences of positions lose float32 digits of |shift| ~ 12 Angstrom.
    np.testing.assert_allclose(b, a, atol=1e-5 * np.abs(a).max())


def test_grid_rotation_is_a_column_shift(molecules):
    # Turning the molecule by one longitude step about z turns each atom's sphere
    # by one column exactly: the featuriser is equivariant on the grid's symmetries.
    positions, charges = molecules
    angle = 2 * math.pi / 32
    rotation = np.array(
        [
            [math.cos(angle), -math.sin(angle), 0],
            [math.sin(angle), math.cos(angle), 0],
            [0, 0, 1],
        ],
        np.float32,
    )
    layer = MoleculeFeaturizer()
    a = np.asarray(layer(positions, charges)["spheres"])
    b = np.asarray(layer(positions @ rotation.T, charges)["spheres"])
    np.testing.assert_allclose(b, np.roll(a, 1, axis=2), atol=1e-5 * np.abs(a).max())


def test_packing_lists_real_atoms_and_flags_overflow():
    charges = np.zeros((3, 29), np.int32)
    charges[0, :5] = 6
    charges[2, :4] = 1
    index, valid, overflow = pack_atoms(charges, 12)
    assert np.asarray(valid).tolist() == [1.0] * 9 + [0.0] * 3
    assert np.asarray(index)[:9].tolist() == [0, 1, 2, 3, 4, 58, 59, 60, 61]
    assert not bool(overflow)
    assert bool(pack_atoms(charges, 8)[2])


def test_atom_at_origin_next_to_padding_is_finite():
    # The anchor produced 0 * inf = NaN for padded atoms when a real atom sat at
    # the origin.
    positions = np.zeros((1, 29, 3), np.float32)
    positions[0, 1] = (1.0, 0.0, 0.0)
    charges = np.zeros((1, 29), np.int32)
    charges[0, :2] = (1, 6)
    spheres = np.asarray(MoleculeFeaturizer()(positions, charges)["spheres"])
    assert np.isfinite(spheres).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"grid_size": 31}, "grid_size must be an even number"),
        ({"atoms_per_molecule": 40}, "atoms_per_molecule must lie in"),
        ({"cone_angle": 4.0}, "cone_angle must lie in"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MoleculeFeaturizer(**kwargs)


def test_config_round_trip():
    layer = MoleculeFeaturizer(16, 18.5, 0.7)
    clone = MoleculeFeaturizer.from_config(layer.get_config())
    assert (clone.grid_size, clone.atoms_per_molecule, clone.cone_angle) == (
        16,
        18.5,
        0.7,
    )
