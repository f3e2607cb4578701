"""QM9 molecules as arrays, in the schema of the TensorFlow Datasets ``qm9`` builder.

QM9 (Ramakrishnan et al., Scientific Data 1, 140022, 2014; CC0) holds 133,885 small
organic molecules of H, C, N, O and F (at most 9 heavy atoms, 29 atoms in all) with
B3LYP/6-31G(2df,p) geometries and properties. 3,054 of them failed QM9's consistency
check ("uncharacterized"); the other `CHARACTERIZED_SIZE` = 130,831 are the data set.

Two sources give the same columns (`FEATURES`), keyed by the TFDS feature names:

* ``qm9pack`` (PyPI, MIT): the 130,831 molecules as CSV files inside the wheel. They
  are parsed once (about 12 s on one core) and cached as an ``.npz`` under
  ``$KERAS_SPHERE_CACHE/qm9/`` (default ``~/.cache/keras_sphere/qm9/``; ``off``
  disables it) that loads in under a second. qm9pack has one SMILES per molecule,
  GDB-17's (its paper, ``doc/paper.md`` in github.com/raghurama123/qm9pack), which is
  the builder's ``SMILES``, and one InChI, taken as the builder's ``InChI`` (the first
  of QM9's two; qm9pack does not say which it kept). The strings of the relaxed
  geometry, ``SMILES_relaxed`` and ``InChI_relaxed``, are missing and left out.
  ``tag`` is the constant "gdb" that starts line 2 of every QM9 ``.xyz`` file.
* TFDS ``qm9/<config>``, downloaded from figshare and prepared by
  ``tensorflow_datasets``, read with ``tfds.load`` (all its features).

Splits follow the builder's configs (`CONFIGS`, `split_indices`): ``original`` (all
in ``train``), ``cormorant`` and ``dimenet``. Rows of every split come in ascending
``index``, whatever the source, so rows line up between the sources.

For prediction, `from_xyz`, `from_atoms` and `from_smiles` turn molecules into the
zero-padded (positions, charges) arrays that a model takes; `molecule_arrays` does
the padding and checks elements, sizes and finiteness for all of them.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import itertools
import numbers
import os
import pathlib
import warnings
import zipfile
from collections.abc import Iterable
from collections.abc import Sequence

import numpy as np

from keras_sphere._cache import cache_root

__all__ = [
    "ATOM_REFERENCE_HARTREE",
    "CHARACTERIZED_SIZE",
    "CONFIGS",
    "ELEMENTS",
    "FEATURES",
    "MAX_ATOMS",
    "from_atoms",
    "from_smiles",
    "from_xyz",
    "load",
    "molecule_arrays",
    "split_indices",
]

MAX_ATOMS = 29
CHARACTERIZED_SIZE = 130_831
ELEMENTS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}

# Energies of the free atoms in Hartree (B3LYP/6-31G(2df,p)): QM9's "atomref" table,
# figshare file 3195395 (https://figshare.com/ndownloader/files/3195395), which the
# TFDS builder downloads for its *_atomization features. U0 at 0 K; U, H, G at 298.15 K.
ATOM_REFERENCE_HARTREE = {
    "U0": dict(H=-0.500273, C=-37.846772, N=-54.583861, O=-75.064579, F=-99.718730),
    "U": dict(H=-0.498857, C=-37.845355, N=-54.582445, O=-75.063163, F=-99.717314),
    "H": dict(H=-0.497912, C=-37.844411, N=-54.581501, O=-75.062219, F=-99.716370),
    "G": dict(H=-0.510927, C=-37.861317, N=-54.598897, O=-75.079532, F=-99.733544),
}

# The builder's configs (tensorflow_datasets 4.9.10, datasets/qm9).
CONFIGS = {
    "original": dict(permutation_seed=None, train_size=130_831, validation_size=0),
    "cormorant": dict(permutation_seed=0, train_size=100_000, validation_size=17_748),
    "dimenet": dict(permutation_seed=42, train_size=110_000, validation_size=10_000),
}

# name -> (shape per molecule, dtype, unit and meaning); "str" columns are object
# arrays of Python str, and "frequencies" an object array of float32 arrays.
FEATURES = {
    "index": ((), "int64", "QM9 molecule number N of gdb_N, 1 ... 133,885"),
    "num_atoms": ((), "int64", "atoms including hydrogens, at most 29"),
    "charges": ((29,), "int64", "atomic numbers, 0 for padding"),
    "positions": ((29, 3), "float32", "Angstrom, B3LYP geometry, zero-padded"),
    "Mulliken_charges": ((29,), "float32", "e, zero-padded"),
    "A": ((), "float32", "rotational constant, GHz"),
    "B": ((), "float32", "rotational constant, GHz"),
    "C": ((), "float32", "rotational constant, GHz"),
    "mu": ((), "float32", "dipole moment, Debye"),
    "alpha": ((), "float32", "isotropic polarizability, bohr^3"),
    "homo": ((), "float32", "HOMO energy, Hartree"),
    "lumo": ((), "float32", "LUMO energy, Hartree"),
    "gap": ((), "float32", "LUMO - HOMO, Hartree"),
    "r2": ((), "float32", "electronic spatial extent, bohr^2"),
    "zpve": ((), "float32", "zero-point vibrational energy, Hartree"),
    "U0": ((), "float32", "total internal energy at 0 K, Hartree"),
    "U": ((), "float32", "total internal energy at 298.15 K, Hartree"),
    "H": ((), "float32", "total enthalpy at 298.15 K, Hartree"),
    "G": ((), "float32", "total free energy at 298.15 K, Hartree"),
    "Cv": ((), "float32", "heat capacity at 298.15 K, cal/(mol K)"),
    "U0_atomization": ((), "float32", "U0 minus the atoms' U0, Hartree"),
    "U_atomization": ((), "float32", "U minus the atoms' U, Hartree"),
    "H_atomization": ((), "float32", "H minus the atoms' H, Hartree"),
    "G_atomization": ((), "float32", "G minus the atoms' G, Hartree"),
    # 3 n - 6 values (3 n - 5 if linear); as qm9pack has them, 334 molecules list
    # two nearly equal runs of them, 2 (3 n - 6) values.
    "frequencies": ((None,), "float32", "harmonic frequencies, cm^-1"),
    "tag": ((), "str", '"gdb" for every molecule'),
    "SMILES": ((), "str", "GDB-17 SMILES"),
    "InChI": ((), "str", "InChI (the first of QM9's two)"),
}

_QM9PACK_SCALARS = {  # TFDS name -> qm9pack column (qm9pack_utility.helper)
    "A": "RotA_GHz",
    "B": "RotB_GHz",
    "C": "RotC_GHz",
    "mu": "Dipole_debye",
    "alpha": "Polarizability_bohr3",
    "homo": "HOMO_au",
    "lumo": "LUMO_au",
    "gap": "HOMO_LUMO_gap_au",
    "r2": "R2_bohr2",
    "zpve": "ZPVE_au",
    "U0": "InternalEnergy_0K_au",
    "U": "InternalEnergy_298K_au",
    "H": "Enthalphy_298K_au",
    "G": "GibbsFreeEnergy_298K_au",
    "Cv": "Heatcapacity_Cv_cal_mol_K",
}
_EXTRA = 'pip install "keras-sphere[qm9]"'
_FORMAT_VERSION = 1
_CHUNK_ROWS = 10_000
_NOT_IN_LISTS = str.maketrans("", "", "[]' ")


# --- padded arrays for a model ---------------------------------------------------


def _atomic_numbers(atoms: Iterable, label: str) -> list[int]:
    """Atomic numbers of one molecule given as symbols or numbers, checked."""
    charges = []
    for atom in atoms:
        if isinstance(atom, str):
            text = atom.strip()
            charge = int(text) if text.isdigit() else ELEMENTS.get(text.capitalize())
            if charge is None:
                raise ValueError(_element_message(label, repr(atom)))
        elif isinstance(atom, numbers.Integral):
            charge = int(atom)
        else:
            raise TypeError(
                f"Atoms are element symbols or atomic numbers. Received: {atom!r} "
                f"({type(atom).__name__}) in {label}."
            )
        if charge not in ELEMENTS.values():
            raise ValueError(_element_message(label, f"atomic number {charge}"))
        charges.append(charge)
    if not 1 <= len(charges) <= MAX_ATOMS:
        raise ValueError(
            f"{label} has {len(charges)} atoms; QM9 models take 1 to {MAX_ATOMS} "
            "atoms, hydrogens included. Remove it from the batch."
        )
    return charges


def _element_message(label: str, element: str) -> str:
    return (
        f"{label} contains {element}, outside QM9's elements H, C, N, O, F; a QM9 "
        "model cannot represent it. Remove the molecule from the batch."
    )


def _scatter(values: np.ndarray, counts: np.ndarray, dtype) -> np.ndarray:
    """Per-atom values (sum(counts), ...) -> zero-padded (n, MAX_ATOMS, ...)."""
    molecule = np.repeat(np.arange(counts.size), counts)
    slot = np.arange(molecule.size) - np.repeat(np.cumsum(counts) - counts, counts)
    padded = np.zeros((counts.size, MAX_ATOMS, *values.shape[1:]), dtype)
    padded[molecule, slot] = values
    return padded


def molecule_arrays(
    symbols_or_charges: Sequence[Iterable[str | int]],
    positions: Sequence[np.ndarray],
    *,
    names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded model inputs for a batch of molecules, after checking them.

    Args:
        symbols_or_charges: per molecule, its atoms as element symbols ("C") or
            atomic numbers (6); only H, C, N, O, F.
        positions: per molecule, float coordinates (n_atoms, 3) in Angstrom.
        names: optional label per molecule (SMILES, QM9 index) for error messages.

    Returns:
        positions: float32, shape (n, 29, 3), Angstrom, zero beyond each molecule's
            atoms; charges: int32, shape (n, 29), atomic numbers, 0 for padding.

    Raises:
        ValueError: for an element outside H, C, N, O, F, a molecule with no atoms or
            more than 29, positions that do not match the atoms, or non-finite
            positions (naming the molecules).
        TypeError: for an atom that is neither a str nor an integer.

    Example:
        >>> positions, charges = molecule_arrays(
        ...     [["C", "O"], [8, 1, 1]], [np.zeros((2, 3)), np.ones((3, 3))]
        ... )
        >>> positions.shape, charges[:, :4].tolist()
        ((2, 29, 3), [[6, 8, 0, 0], [8, 1, 1, 0]])
    """
    if len(symbols_or_charges) != len(positions):
        raise ValueError(
            f"Got atoms for {len(symbols_or_charges)} molecules and positions for "
            f"{len(positions)}; pass one entry of each per molecule."
        )
    if names is not None and len(names) != len(positions):
        raise ValueError(f"Got {len(names)} names for {len(positions)} molecules.")

    def label(i):
        return f"molecule {i}" + ("" if names is None else f" ({names[i]})")

    charges, coordinates = [], []
    for i, (atoms, xyz) in enumerate(zip(symbols_or_charges, positions, strict=True)):
        charges.append(_atomic_numbers(atoms, label(i)))
        coordinates.append(np.asarray(xyz, dtype=np.float64))
        if coordinates[-1].shape != (len(charges[-1]), 3):
            raise ValueError(
                f"{label(i)} has {len(charges[-1])} atoms, so its positions must "
                f"have shape ({len(charges[-1])}, 3). Received: shape "
                f"{coordinates[-1].shape}."
            )
    if not charges:
        raise ValueError("Got no molecules; pass at least one.")
    counts = np.array([len(c) for c in charges])
    flat = np.concatenate(coordinates)  # [atom, xyz]
    finite = np.logical_and.reduceat(
        np.isfinite(flat).all(axis=1), np.cumsum(counts) - counts
    )
    if not finite.all():
        bad = np.flatnonzero(~finite)
        more = ", ..." * (bad.size > 10)
        shown = ", ".join(label(i) for i in bad[:10]) + more
        raise ValueError(
            f"Positions of {bad.size} of {counts.size} molecules are not finite "
            f"(NaN or inf), at batch indices {bad[:10].tolist()}{more}: {shown}. "
            "Remove these "
            "molecules, or recompute their coordinates (for SMILES, `from_smiles` "
            "with another seed), and call again."
        )
    padded = _scatter(flat, counts, np.float32)
    return padded, _scatter(np.concatenate(charges), counts, np.int32)


def from_atoms(atoms, positions=None) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs from ASE-style atoms.

    Args:
        atoms: an ``ase.Atoms`` (or any object with ``get_chemical_symbols`` and
            ``get_positions``), a list of them, or the element symbols (or atomic
            numbers) of one molecule.
        positions: with symbols, float (n_atoms, 3) in Angstrom; else None.

    Returns:
        positions float32 (n, 29, 3) Angstrom and charges int32 (n, 29), as
        `molecule_arrays`; n = 1 for a single molecule.

    Raises:
        TypeError: for symbols without positions, or ``ase.Atoms`` with them.
        ValueError: as `molecule_arrays`.
    """
    if hasattr(atoms, "get_chemical_symbols"):
        atoms = [atoms]
    is_ase = [hasattr(a, "get_chemical_symbols") for a in atoms]
    if positions is not None:
        if any(is_ase):
            raise TypeError("`ase.Atoms` carry their positions; pass positions=None.")
        return molecule_arrays([atoms], [positions])
    if not is_ase or not all(is_ase):
        raise TypeError(
            "Pass an `ase.Atoms`, a list of them, or (symbols, positions) of one "
            f"molecule. Received: {type(atoms).__name__} without positions."
        )
    return molecule_arrays(
        [a.get_chemical_symbols() for a in atoms],
        [a.get_positions() for a in atoms],
        names=[a.get_chemical_formula() for a in atoms],
    )


def from_xyz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs from an ``.xyz`` file of one or more molecules.

    Reads the standard format (atom count, comment, then ``symbol x y z`` per atom,
    repeated per molecule; further columns are ignored) and QM9's own variant, whose
    comment starts with "gdb", whose atom lines carry a Mulliken charge, whose numbers
    may use Mathematica's ``*^`` exponent, and which has three more lines per molecule
    (frequencies, SMILES, InChI).

    Args:
        path: the file; coordinates in Angstrom.

    Returns:
        positions float32 (n, 29, 3) Angstrom and charges int32 (n, 29) for the n
        molecules of the file, as `molecule_arrays`.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for a malformed file (naming the line), or as `molecule_arrays`.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No .xyz file at {path}.")
    lines = path.read_text().splitlines()
    symbols, positions, names = [], [], []
    line = 0
    while line < len(lines):
        if not lines[line].strip():
            line += 1
            continue
        try:
            n_atoms = int(lines[line])
        except ValueError:
            raise ValueError(
                f"{path}, line {line + 1}: expected the atom count of a molecule. "
                f"Received: {lines[line][:60]!r}."
            ) from None
        comment = lines[line + 1].strip() if line + 1 < len(lines) else ""
        block = lines[line + 2 : line + 2 + n_atoms]
        if len(block) < n_atoms:
            raise ValueError(
                f"{path}, line {line + 1}: the file ends after {len(block)} of the "
                f"molecule's {n_atoms} atoms."
            )
        xyz = []
        for k, text in enumerate(block):
            fields = text.replace("*^", "e").split()
            try:
                xyz.append([float(v) for v in fields[1:4]])
            except ValueError:
                xyz.append([])
            if len(xyz[-1]) != 3:
                raise ValueError(
                    f"{path}, line {line + 3 + k}: expected 'symbol x y z'. "
                    f"Received: {text[:60]!r}."
                )
        symbols.append([fields.split()[0] for fields in block])
        positions.append(np.array(xyz))
        is_qm9 = comment.startswith("gdb")
        title = " ".join(comment.split()[:2]) if is_qm9 else comment[:40]
        names.append(f"{path.name} #{len(names)} '{title}'")
        line += 2 + n_atoms + (3 if is_qm9 else 0)
    return molecule_arrays(symbols, positions, names=names)


def from_smiles(
    smiles: str | Sequence[str], seed: int = 0, *, max_iterations: int = 2000
) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs from SMILES, with RDKit conformers (the ``data.md`` 1.3 recipe).

    Each SMILES is parsed, given explicit hydrogens, embedded with ETKDG v3 and
    random seed `seed` (a failed embedding is retried once from random coordinates)
    and optimised with MMFF94. These geometries are not QM9's B3LYP ones, and an
    unspecified stereocentre is embedded as an arbitrary stereoisomer.

    Args:
        smiles: one SMILES or a sequence of them.
        seed: RDKit's random seed for the embedding (same seed, same geometry).
        max_iterations: MMFF94 optimisation steps; a warning names the molecules
            that did not converge in as many.

    Returns:
        positions float32 (n, 29, 3) Angstrom and charges int32 (n, 29), one row per
        SMILES in order, as `molecule_arrays`.

    Raises:
        ImportError: without RDKit (``pip install "keras-sphere[qm9]"``).
        ValueError: for SMILES that RDKit cannot parse or embed (listing them), or
            as `molecule_arrays` (elements, more than 29 atoms with hydrogens).
    """
    try:
        from rdkit import Chem
        from rdkit import rdBase
        from rdkit.Chem import rdDistGeom
        from rdkit.Chem import rdForceFieldHelpers
    except ImportError as error:
        raise ImportError(f"from_smiles needs RDKit: {_EXTRA}") from error
    smiles = [smiles] if isinstance(smiles, str) else list(smiles)
    symbols, positions, unparsed, unembedded, unconverged = [], [], [], [], []
    for i, text in enumerate(smiles):
        with rdBase.BlockLogs():
            molecule = Chem.MolFromSmiles(text)
        if molecule is None:
            unparsed.append(text)
            continue
        molecule = Chem.AddHs(molecule)
        atoms = [atom.GetSymbol() for atom in molecule.GetAtoms()]
        _atomic_numbers(atoms, f"molecule {i} ({text})")  # before a costly embedding
        params = rdDistGeom.ETKDGv3()
        params.randomSeed = int(seed)
        if rdDistGeom.EmbedMolecule(molecule, params) < 0:
            params.useRandomCoords = True
            if rdDistGeom.EmbedMolecule(molecule, params) < 0:
                unembedded.append(text)
                continue
        if rdForceFieldHelpers.MMFFHasAllMoleculeParams(molecule):
            status = rdForceFieldHelpers.MMFFOptimizeMolecule(
                molecule, mmffVariant="MMFF94", maxIters=int(max_iterations)
            )
            if status != 0:
                unconverged.append(text)
        else:
            unconverged.append(text)
        symbols.append(atoms)
        positions.append(molecule.GetConformer().GetPositions())
    if unparsed:
        raise ValueError(
            f"RDKit cannot parse these SMILES: {unparsed}. Correct or remove them."
        )
    if unembedded:
        raise ValueError(
            f"RDKit's ETKDG could not embed these molecules in 3D with seed={seed}: "
            f"{unembedded}. Try another seed, or remove them."
        )
    if unconverged:
        warnings.warn(
            f"MMFF94 did not converge in {max_iterations} steps (or lacks parameters) "
            f"for {len(unconverged)} molecules, kept unconverged: {unconverged[:10]}",
            stacklevel=2,
        )
    return molecule_arrays(symbols, positions, names=smiles)


# --- splits ----------------------------------------------------------------------


def _split_names(config: str) -> list[str]:
    if config not in CONFIGS:
        raise ValueError(f"Unknown QM9 config {config!r}; use one of {list(CONFIGS)}.")
    settings = CONFIGS[config]
    names = ["train"]
    if settings["train_size"] < CHARACTERIZED_SIZE and settings["validation_size"] > 0:
        names.append("validation")
    if settings["train_size"] + settings["validation_size"] < CHARACTERIZED_SIZE:
        names.append("test")
    return names


def split_indices(indices: Sequence[int], config: str = "dimenet") -> dict:
    """QM9 indices of each split of a config, drawn as the TFDS builder draws them.

    The builder sorts the characterized indices, permutes them with
    ``np.random.RandomState(permutation_seed).permutation`` (not for ``original``),
    and cuts train, validation and test from the front.

    Args:
        indices: the QM9 indices (1 ... 133,885) of the characterized molecules, in
            any order (the ``index`` column of ``load(config="original")``).
        config: a key of `CONFIGS`.

    Returns:
        split name -> int64 indices (the builder's order); ``original`` has only
        "train", the others "train", "validation" and "test".

    Raises:
        ValueError: for an unknown config, or if a shuffled config is asked for
            without exactly the 130,831 characterized molecules.
    """
    names = _split_names(config)
    ids = np.unique(np.asarray(indices, dtype=np.int64))  # sorted, as the builder
    settings = CONFIGS[config]
    if settings["permutation_seed"] is not None:
        if ids.size != CHARACTERIZED_SIZE:
            raise ValueError(
                f"The {config!r} split permutes all {CHARACTERIZED_SIZE:,} "
                f"characterized QM9 molecules. Received: {ids.size:,} indices."
            )
        # The builder's legacy generator: only it reproduces the published splits.
        generator = np.random.RandomState(settings["permutation_seed"])  # noqa: NPY002
        ids = generator.permutation(ids)
    ends = np.cumsum([settings["train_size"], settings["validation_size"], ids.size])
    return dict(zip(names, np.split(ids, ends[: len(names) - 1]), strict=True))


# --- the qm9pack source ----------------------------------------------------------


def _qm9pack_source() -> tuple[pathlib.Path, str]:
    """(folder of qm9pack's CSV files, qm9pack version), found without importing it.

    ``import qm9pack`` fails with recent setuptools, which dropped pkg_resources.
    """
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"QM9 from qm9pack needs the qm9pack package: {_EXTRA}")
    folder = pathlib.Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder, importlib.metadata.version("qm9pack")


def _numbers(texts: Sequence[str], labels) -> np.ndarray:
    """Comma-separated numbers, possibly in brackets, from many cells into one array."""
    joined = ",".join(texts).translate(_NOT_IN_LISTS).replace("*^", "e")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an unparsed token only warns
            return np.fromstring(joined, sep=",")
    except (DeprecationWarning, ValueError):
        pass
    for i, text in enumerate(texts):  # find the culprit to name it
        for token in text.translate(_NOT_IN_LISTS).replace("*^", "e").split(","):
            try:
                float(token)
            except ValueError:
                raise ValueError(
                    f"qm9pack: cannot read the number {token!r} of {labels(i)}."
                ) from None
    raise ValueError(f"qm9pack: cannot read the numbers of {labels(0)} onwards.")


def _parse_rows(rows: list[list[str]], column: dict[str, int]) -> dict:
    """One chunk of qm9pack rows -> flat arrays (per-atom values concatenated)."""
    chunk = {
        "index": np.array([row[column["Index"]] for row in rows], np.int64),
        "num_atoms": np.array([row[column["N_atoms"]] for row in rows], np.int64),
        "SMILES": [row[column["SMILES"]] for row in rows],
        "InChI": [row[column["InChi"]] for row in rows],
    }

    def label(i):
        return f"molecule index {chunk['index'][i]} ({chunk['SMILES'][i]})"

    def cells(name):
        return [row[column[name]] for row in rows]

    for name, source in _QM9PACK_SCALARS.items():
        chunk[name] = _numbers(cells(source), label)
    chunk["elements"] = [
        e.translate(_NOT_IN_LISTS).split(",") for e in cells("Elements")
    ]
    chunk["xyz"] = _numbers(cells("XYZ_Ang"), label)
    chunk["Mulliken_charges"] = _numbers(cells("Mulliken_pop"), label)
    frequencies = cells("Harmonic_Freq_cmi")
    chunk["frequencies"] = _numbers(frequencies, label)
    chunk["frequency_counts"] = np.array([f.count(",") + 1 for f in frequencies])
    mismatch = np.flatnonzero(
        np.array([len(e) for e in chunk["elements"]]) != chunk["num_atoms"]
    )
    if mismatch.size:
        raise ValueError(
            f"qm9pack: Elements and N_atoms differ for {label(mismatch[0])}."
        )
    n_atoms = chunk["num_atoms"].sum()
    if chunk["xyz"].size != 3 * n_atoms or chunk["Mulliken_charges"].size != n_atoms:
        raise ValueError(
            f"qm9pack: XYZ_Ang or Mulliken_pop do not match N_atoms between "
            f"{label(0)} and {label(len(rows) - 1)}."
        )
    chunk["xyz"] = chunk["xyz"].reshape(-1, 3)
    if chunk["frequency_counts"].sum() != chunk["frequencies"].size:
        raise ValueError("qm9pack: Harmonic_Freq_cmi holds an empty list.")
    return chunk


def _read_qm9pack(folder: pathlib.Path, verbose: int) -> dict[str, np.ndarray]:
    """Parse qm9pack's CSV files into the cached (storage) table, sorted by index."""
    from keras.utils import Progbar

    files = sorted(folder.glob("qm9_part*.csv"))
    if not files:
        raise FileNotFoundError(
            f"No qm9_part*.csv files in {folder}; reinstall qm9pack."
        )
    n_rows = 0
    for file in files:
        with open(file, "rb") as handle:
            n_rows += sum(1 for _ in handle) - 1
    progress = Progbar(n_rows, verbose=verbose, unit_name="molecule")
    chunks = []
    for file in files:
        with open(file, newline="") as handle:
            reader = csv.reader(handle)
            column = {name: k for k, name in enumerate(next(reader))}
            while rows := list(itertools.islice(reader, _CHUNK_ROWS)):
                chunks.append(_parse_rows(rows, column))
                progress.add(len(rows))
    merged = {
        name: np.concatenate([c[name] for c in chunks])
        for name in chunks[0]
        if name not in ("elements", "SMILES", "InChI")
    }
    elements = [e for c in chunks for e in c["elements"]]
    smiles = [s for c in chunks for s in c["SMILES"]]
    counts = merged["num_atoms"]
    positions, charges = molecule_arrays(
        elements,
        np.split(merged.pop("xyz"), np.cumsum(counts)[:-1]),
        names=[
            f"QM9 index {i}, {s}" for i, s in zip(merged["index"], smiles, strict=True)
        ],
    )
    table = {
        "positions": positions,
        "charges": charges.astype(np.int64),
        "Mulliken_charges": _scatter(
            merged.pop("Mulliken_charges"), counts, np.float32
        ),
        "SMILES": np.array([s.encode() for s in smiles]),
        "InChI": np.array([s.encode() for c in chunks for s in c["InChI"]]),
    }
    # Atomization energies in float64 before the float32 of the schema, as TFDS.
    numbers_of = np.stack([np.sum(charges == z, axis=1) for z in ELEMENTS.values()], 1)
    for target, reference in ATOM_REFERENCE_HARTREE.items():
        atoms = numbers_of @ np.array([reference[e] for e in ELEMENTS])
        table[f"{target}_atomization"] = (merged[target] - atoms).astype(np.float32)
    for name in _QM9PACK_SCALARS:
        table[name] = merged[name].astype(np.float32)
    table["frequencies"] = merged.pop("frequencies").astype(np.float32)
    for name in ("index", "num_atoms", "frequency_counts"):
        table[name] = merged[name]
    return _sorted_by_index(table)


def _sorted_by_index(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(table["index"], kind="stable")
    if np.any(np.diff(table["index"][order]) == 0):
        raise ValueError("qm9pack lists some molecule index twice.")
    if np.all(order == np.arange(order.size)):
        return table
    counts = table["frequency_counts"]
    starts = np.cumsum(counts) - counts
    picks = [np.arange(starts[k], starts[k] + counts[k]) for k in order]
    sorted_table = {k: v[order] for k, v in table.items() if k != "frequencies"}
    sorted_table["frequencies"] = table["frequencies"][np.concatenate(picks)]
    return sorted_table


def _cache_path(cache_dir, version: str) -> pathlib.Path | None:
    if cache_dir is None:
        root = cache_root()
        if root is None:
            return None
        cache_dir = root / "qm9"
    return pathlib.Path(cache_dir) / f"qm9pack-{version}-format{_FORMAT_VERSION}.npz"


def _qm9pack_table(cache_dir, verbose: int) -> dict[str, np.ndarray]:
    """The whole qm9pack table in storage form, from the cache when there is one."""
    folder, version = _qm9pack_source()
    path = _cache_path(cache_dir, version)
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a corrupted cache entry: parse again and overwrite it
    table = _read_qm9pack(folder, verbose)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            with open(partial, "wb") as handle:
                np.savez(handle, **table)
            os.replace(partial, path)  # atomic: readers never see half a file
        except OSError:
            pass  # a read-only cache directory only costs a parse next time
    return table


def _columns(table: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of the storage table in the public form (`FEATURES`)."""
    columns = {
        name: table[name][rows]
        for name in FEATURES
        if name not in ("frequencies", "tag", "SMILES", "InChI")
    }
    for name in ("SMILES", "InChI"):
        columns[name] = table[name][rows].astype(str).astype(object)
    columns["tag"] = np.full(rows.size, "gdb", dtype=object)
    counts = table["frequency_counts"]
    starts = np.cumsum(counts) - counts
    frequencies = np.empty(rows.size, dtype=object)
    for k, row in enumerate(rows):
        frequencies[k] = table["frequencies"][starts[row] : starts[row] + counts[row]]
    columns["frequencies"] = frequencies
    return columns


# --- the TFDS source -------------------------------------------------------------


def _hide_accelerators_from_tensorflow() -> None:
    """Keep TensorFlow, used only for reading, off the GPUs that JAX computes on."""
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        pass  # TensorFlow already initialised its devices; nothing left to do


def _tfds_columns(examples: Iterable[dict]) -> dict[str, np.ndarray]:
    """NumPy examples of ``tfds.as_numpy`` -> columns sorted by index."""
    examples = list(examples)
    if not examples:
        raise ValueError("The TFDS split holds no examples.")
    columns = {}
    for name in examples[0]:
        values = [example[name] for example in examples]
        if isinstance(values[0], bytes):
            columns[name] = np.array([v.decode() for v in values], dtype=object)
        elif name == "frequencies":
            columns[name] = np.empty(len(values), dtype=object)
            for k, value in enumerate(values):
                columns[name][k] = np.asarray(value, np.float32)
        else:
            columns[name] = np.stack(values)
    order = np.argsort(columns["index"], kind="stable")
    return {name: column[order] for name, column in columns.items()}


def _load_tfds(config: str, split: str, data_dir) -> dict[str, np.ndarray]:
    try:
        import tensorflow  # noqa: F401  (tfds reads through it)
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            f"QM9 from TFDS needs tensorflow and tensorflow-datasets: {_EXTRA}"
        ) from error
    _hide_accelerators_from_tensorflow()
    dataset = tfds.load(f"qm9/{config}", split=split, data_dir=data_dir)
    return _tfds_columns(tfds.as_numpy(dataset))


# --- public loader ---------------------------------------------------------------


def load(
    split: str = "train",
    config: str = "dimenet",
    source: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    verbose: int = 1,
) -> dict[str, np.ndarray]:
    """One split of QM9 as columns keyed by the TFDS feature names.

    Args:
        split: "train", or also "validation" and "test" for a shuffled config.
        config: "dimenet" (110,000 / 10,000 / 10,831, seed 42), "cormorant"
            (100,000 / 17,748 / 13,083, seed 0) or "original" (all 130,831 in
            "train"); see `CONFIGS` and `split_indices`.
        source: "qm9pack", "tfds", or "auto" (qm9pack if installed, else TFDS).
        cache_dir: folder of the parsed-qm9pack cache; default
            ``$KERAS_SPHERE_CACHE/qm9`` (``~/.cache/keras_sphere/qm9``), none when
            KERAS_SPHERE_CACHE is "off". Unused by TFDS, which has its own.
        data_dir: TFDS data directory (TFDS's default when None).
        verbose: 1 shows a progress bar while qm9pack is parsed (once).

    Returns:
        name -> array with one row per molecule in ascending ``index``: the columns
        of `FEATURES` (shapes, dtypes and units there), for example positions
        float32 (n, 29, 3) Angstrom, charges int64 (n, 29), U0_atomization float32
        (n,) Hartree, SMILES object (n,) of str. TFDS adds SMILES_relaxed and
        InChI_relaxed.

    Raises:
        ValueError: for an unknown config or a split the config does not have.
        ImportError: if the source is not installed (``pip install
            "keras-sphere[qm9]"``).
    """
    names = _split_names(config)
    if split not in names:
        raise ValueError(
            f"The {config!r} config has the splits {names}. Received: split={split!r}."
        )
    if source not in ("auto", "qm9pack", "tfds"):
        raise ValueError(
            f"source must be 'auto', 'qm9pack' or 'tfds'. Received: source={source!r}."
        )
    if source == "auto":
        if importlib.util.find_spec("qm9pack") is not None:
            source = "qm9pack"
        elif importlib.util.find_spec("tensorflow_datasets") is not None:
            source = "tfds"
        else:
            raise ImportError(f"QM9 needs qm9pack or tensorflow-datasets: {_EXTRA}")
    if source == "tfds":
        return _load_tfds(config, split, data_dir)
    table = _qm9pack_table(cache_dir, verbose)
    ids = split_indices(table["index"], config)[split]
    return _columns(table, np.searchsorted(table["index"], np.sort(ids)))
