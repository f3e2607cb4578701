import numpy as np
import pytest

ATOM_TYPES = (1, 6, 7, 8, 9)


def random_molecules(rng, n_molecules, low=3, high=20):
    """Zero-padded random molecules: positions (n, 29, 3) Angstrom, charges (n, 29)."""
    charges = np.zeros((n_molecules, 29), np.int32)
    positions = np.zeros((n_molecules, 29, 3), np.float32)
    for index in range(n_molecules):
        count = int(rng.integers(low, high + 1))
        charges[index, :count] = rng.choice(ATOM_TYPES, count)
        # Atoms at least ~1 Angstrom apart, like real molecules.
        positions[index, :count] = rng.normal(size=(count, 3)) * 1.6
    return positions, charges


@pytest.fixture
def make_molecules():
    """random_molecules(rng, n_molecules, low, high) as a fixture."""
    return random_molecules


@pytest.fixture
def molecules():
    return random_molecules(np.random.default_rng(0), 6)
