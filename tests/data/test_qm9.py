"""Tests of the QM9 loader and the molecule -> model-input functions (`data.qm9`).

Tests on the full data set need qm9pack; the first run parses it into the cache
(``$KERAS_SPHERE_CACHE/qm9``, about 12 s on one core), later runs load the cache in
well under a second. The cache mechanics are tested on a three-molecule qm9pack-format
folder written here.
"""

import csv
import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keras_sphere.data import qm9

SUBSET_CSV = (
    pathlib.Path(__file__).parents[3] / "shared" / "data" / "qm9" / "qm9_subset.csv"
)
HAS_QM9PACK = importlib.util.find_spec("qm9pack") is not None
needs_qm9pack = pytest.mark.skipif(
    not HAS_QM9PACK, reason='needs qm9pack (pip install "keras-sphere[qm9]")'
)

# The kcal/mol columns of qm9_subset.csv (DeepChem's qm9.csv) were converted from
# Hartree with 627.509 kcal/mol, not CODATA's 627.509474: fitting the factor to
# total - atom references over the subset gives 627.5090000 (spread 1e-10), and with
# it the subset's values are reproduced in float64 to 1e-10 kcal/mol.
SUBSET_KCAL_PER_HARTREE = 627.509
SUBSET_TOTALS = {"U0": "u0", "U": "u298", "H": "h298", "G": "g298"}

# Split ids drawn by tensorflow_datasets 4.9.10's qm9 builder (_get_split_ids), for
# the 130,831 characterized molecules: (size, first three ids).
BUILDER_SPLITS = {
    "original": {"train": (130_831, [1, 2, 3])},
    "cormorant": {
        "train": (100_000, [133161, 70467, 8226]),
        "validation": (17_748, [70434, 125892, 29477]),
        "test": (13_083, [117980, 92051, 68086]),
    },
    "dimenet": {
        "train": (110_000, [114631, 102124, 57491]),
        "validation": (10_000, [91851, 91240, 46212]),
        "test": (10_831, [24660, 21361, 31451]),
    },
}

# Three molecules as qm9pack stores them (rows of qm9_part1.csv, abridged).
METHANE = {
    "XYZ_file": "dsgdb9nsd_000001.xyz",
    "Index": "1",
    "SMILES": "C",
    "InChi": "InChI=1S/CH4/h1H4",
    "N_atoms": "5",
    "Stoichiometry": "[4,1,0,0,0]",
    "Elements": "['C','H','H','H','H']",
    "XYZ_Ang": "[[-0.0126981359,1.0858041578,0.0080009958],"
    "[0.002150416,-0.0060313176,0.0019761204],[1.0117308433,1.4637511618,0.0002765748],"
    "[-0.540815069,1.4475266138,-0.8766437152],[-0.5238136345,1.4379326443,0.9063972942]]",
    "Mulliken_pop": "[-0.535689,0.133921,0.133922,0.133923,0.133923]",
    "Harmonic_Freq_cmi": "[1341.307,1341.3284,1341.365,1562.6731,1562.7453,3038.3205,"
    "3151.6034,3151.6788,3151.7078]",
    "RotA_GHz": "157.7118",
    "RotB_GHz": "157.70997",
    "RotC_GHz": "157.70699",
    "Dipole_debye": "0.",
    "Polarizability_bohr3": "13.21",
    "HOMO_au": "-0.3877",
    "LUMO_au": "0.1171",
    "HOMO_LUMO_gap_au": "0.5048",
    "R2_bohr2": "35.3641",
    "ZPVE_au": "0.044749",
    "InternalEnergy_0K_au": "-40.47893",
    "InternalEnergy_298K_au": "-40.476062",
    "Enthalphy_298K_au": "-40.475117",
    "GibbsFreeEnergy_298K_au": "-40.498597",
    "Heatcapacity_Cv_cal_mol_K": "6.469",
}
ACETYLENE = {  # "0." and "1." tokens, as in qm9pack
    **METHANE,
    "XYZ_file": "dsgdb9nsd_000004.xyz",
    "Index": "4",
    "SMILES": "C#C",
    "InChi": "InChI=1S/C2H2/c1-2/h1-2H",
    "N_atoms": "4",
    "Elements": "['C','C','H','H']",
    "XYZ_Ang": "[[0.5995394918,0.,1.],[-0.5995394918,0.,1.],[-1.6616385861,0.,1.],"
    "[1.6616385861,0.,1.]]",
    "Mulliken_pop": "[-0.207019,-0.207019,0.207019,0.207019]",
    "Harmonic_Freq_cmi": "[549.7648,549.7648,795.2713,795.2713,2078.1131,3455.8096,"
    "3557.8599]",
    "InternalEnergy_0K_au": "-77.308427",
}
WATER = {  # Mulliken charge with an exponent
    **METHANE,
    "XYZ_file": "dsgdb9nsd_000003.xyz",
    "Index": "3",
    "SMILES": "O",
    "InChi": "InChI=1S/H2O/h1H2",
    "N_atoms": "3",
    "Elements": "['O','H','H']",
    "XYZ_Ang": "[[-0.0343604951,0.9775395708,0.0076015923],"
    "[0.0647664923,0.0205721989,0.0015346341],[0.8717903737,1.3007924048,0.0006931336]]",
    "Mulliken_pop": "[-0.589706,0.294853,5.E-6]",
    "Harmonic_Freq_cmi": "[1671.4222,3803.6305,3907.698]",
    "InternalEnergy_0K_au": "-76.404702",
}


def write_qm9pack(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "qm9_part1.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(METHANE), quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows(rows)
    return folder


@pytest.fixture
def fake_qm9pack(tmp_path, monkeypatch):
    """A qm9pack-format folder of three molecules, in place of the installed one."""
    folder = write_qm9pack(tmp_path / "qm9pack", [WATER, ACETYLENE, METHANE])
    monkeypatch.setattr(qm9, "_qm9pack_source", lambda: (folder, "0.test"))
    return folder


@pytest.fixture(scope="module")
def full_table():
    """All 130,831 molecules from qm9pack, through the user's cache."""
    if not HAS_QM9PACK:
        pytest.skip('needs qm9pack (pip install "keras-sphere[qm9]")')
    return qm9.load("train", "original", verbose=0)


# --- the qm9pack source, on the small folder ---------------------------------------


def test_parse_gives_the_tfds_schema(fake_qm9pack, tmp_path):
    table = qm9.load("train", "original", cache_dir=tmp_path / "cache", verbose=0)
    assert set(table) == set(qm9.FEATURES)
    for name, (shape, dtype, _) in qm9.FEATURES.items():
        expected = object if dtype == "str" or shape == (None,) else np.dtype(dtype)
        assert table[name].dtype == expected, name
        assert table[name].shape == (3, *shape) or shape == (None,), name
    np.testing.assert_array_equal(table["index"], [1, 3, 4])  # sorted by index
    np.testing.assert_array_equal(table["num_atoms"], [5, 3, 4])
    np.testing.assert_array_equal(table["charges"][0, :6], [6, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(table["positions"][2, :4, 1], 0.0)  # "0." tokens
    np.testing.assert_array_equal(table["positions"][2, :4, 2], 1.0)  # "1." tokens
    assert np.all(table["positions"][0, 5:] == 0)
    assert table["Mulliken_charges"][1, 2] == np.float32(5e-6)
    assert table["frequencies"][1].dtype == np.float32
    assert table["frequencies"][1].tolist() == pytest.approx(
        [1671.4222, 3803.6305, 3907.698]
    )
    assert table["SMILES"].tolist() == ["C", "O", "C#C"]
    assert table["tag"].tolist() == ["gdb"] * 3
    # Methane's atomization energy: U0 - (C + 4 H) from the atomref table.
    reference = qm9.ATOM_REFERENCE_HARTREE["U0"]
    expected = -40.47893 - (reference["C"] + 4 * reference["H"])
    assert table["U0_atomization"][0] == np.float32(expected)


def test_cache_is_written_once_and_keyed_by_version(
    fake_qm9pack, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    first = qm9.load("train", "original", cache_dir=cache, verbose=0)
    assert [p.name for p in cache.iterdir()] == ["qm9pack-0.test-format1.npz"]

    def no_parse(*args):
        raise AssertionError("parsed again instead of reading the cache")

    monkeypatch.setattr(qm9, "_read_qm9pack", no_parse)
    again = qm9.load("train", "original", cache_dir=cache, verbose=0)
    for name in qm9.FEATURES:
        if name == "frequencies":
            for a, b in zip(first[name], again[name], strict=True):
                np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_array_equal(first[name], again[name], err_msg=name)


def test_cache_root_follows_the_environment(fake_qm9pack, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_SPHERE_CACHE", str(tmp_path / "root"))
    qm9.load("train", "original", verbose=0)
    assert (tmp_path / "root" / "qm9" / "qm9pack-0.test-format1.npz").is_file()
    monkeypatch.setenv("KERAS_SPHERE_CACHE", "off")
    monkeypatch.setattr(pathlib.Path, "home", lambda: tmp_path / "home")
    qm9.load("train", "original", verbose=0)
    assert not (tmp_path / "home").exists()


def test_corrupted_cache_is_rebuilt(fake_qm9pack, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "qm9pack-0.test-format1.npz").write_bytes(b"not a zip file")
    table = qm9.load("train", "original", cache_dir=cache, verbose=0)
    assert table["index"].tolist() == [1, 3, 4]
    with np.load(cache / "qm9pack-0.test-format1.npz") as stored:
        assert stored["index"].tolist() == [1, 3, 4]


def test_record_with_a_foreign_element_is_named(tmp_path, monkeypatch):
    chlorine = {**WATER, "Elements": "['O','Cl','H']", "SMILES": "OCl"}
    folder = write_qm9pack(tmp_path / "qm9pack", [METHANE, chlorine])
    monkeypatch.setattr(qm9, "_qm9pack_source", lambda: (folder, "0.test"))
    with pytest.raises(ValueError, match=r"QM9 index 3, OCl\) contains 'Cl', outside"):
        qm9.load("train", "original", cache_dir=tmp_path, verbose=0)


def test_record_with_an_unreadable_number_is_named(tmp_path, monkeypatch):
    broken = {**WATER, "Mulliken_pop": "[-0.589706,x,0.2]"}
    folder = write_qm9pack(tmp_path / "qm9pack", [METHANE, broken])
    monkeypatch.setattr(qm9, "_qm9pack_source", lambda: (folder, "0.test"))
    with pytest.raises(ValueError, match=r"number 'x' of molecule index 3 \(O\)"):
        qm9.load("train", "original", cache_dir=tmp_path, verbose=0)


def test_shuffled_split_needs_every_molecule(fake_qm9pack, tmp_path):
    with pytest.raises(ValueError, match="permutes all 130,831 .* Received: 3 indices"):
        qm9.load("test", "dimenet", cache_dir=tmp_path, verbose=0)


# --- arguments and missing packages ------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"config": "qm7"}, r"Unknown QM9 config 'qm7'; use one of \['original'"),
        (
            {"split": "test", "config": "original"},
            r"splits \['train'\]. Received: split",
        ),
        ({"source": "web"}, "source must be 'auto', 'qm9pack' or 'tfds'. Received"),
    ],
)
def test_load_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        qm9.load(**kwargs)


def test_missing_sources_name_the_extra(monkeypatch):
    find_spec = importlib.util.find_spec

    def without_sources(name, *args):
        return (
            None
            if name in ("qm9pack", "tensorflow_datasets")
            else find_spec(name, *args)
        )

    monkeypatch.setattr(importlib.util, "find_spec", without_sources)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    extra = r'pip install "keras-sphere\[qm9\]"'
    for source in ("auto", "qm9pack", "tfds"):
        with pytest.raises(ImportError, match=extra):
            qm9.load(source=source)


def test_from_smiles_without_rdkit_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdkit", None)
    with pytest.raises(ImportError, match=r'RDKit: pip install "keras-sphere\[qm9\]"'):
        qm9.from_smiles("CCO")


def test_import_does_not_load_tensorflow():
    code = "import sys, keras_sphere.data.qm9; print('tensorflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]


# --- splits --------------------------------------------------------------------------


@pytest.mark.parametrize("config", list(qm9.CONFIGS))
def test_splits_reproduce_the_builder(full_table, config):
    splits = qm9.split_indices(full_table["index"], config)
    assert list(splits) == list(BUILDER_SPLITS[config])
    for name, (size, first) in BUILDER_SPLITS[config].items():
        assert splits[name].dtype == np.int64
        assert splits[name].size == size
        assert splits[name][:3].tolist() == first
    everything = np.concatenate(list(splits.values()))
    np.testing.assert_array_equal(np.sort(everything), full_table["index"])  # disjoint


def test_splits_equal_the_builder_code(full_table):
    builder = pytest.importorskip(
        "tensorflow_datasets.datasets.qm9.qm9_dataset_builder"
    )
    all_ids = np.arange(1, 133_886)
    uncharacterized = np.setdiff1d(all_ids, full_table["index"])
    assert uncharacterized.size == 3_054
    for config, settings in qm9.CONFIGS.items():
        theirs = builder._get_split_ids(uncharacterized, **settings)
        ours = qm9.split_indices(full_table["index"], config)
        assert list(ours) == list(theirs)
        for name in theirs:
            np.testing.assert_array_equal(ours[name], theirs[name])  # order too


@needs_qm9pack
def test_load_split_rows(full_table):
    test = qm9.load("test", "dimenet", verbose=0)
    assert test["positions"].shape == (10_831, 29, 3)
    assert np.all(np.diff(test["index"]) > 0)
    row = np.searchsorted(full_table["index"], test["index"][0])
    for name in ("positions", "U0_atomization", "SMILES"):
        np.testing.assert_array_equal(test[name][0], full_table[name][row])


# --- the full data set --------------------------------------------------------------


def test_full_table_is_consistent(full_table):
    n = qm9.CHARACTERIZED_SIZE
    assert full_table["index"].shape == (n,)
    assert full_table["positions"].shape == (n, 29, 3)
    atoms = full_table["charges"] > 0
    np.testing.assert_array_equal(atoms.sum(axis=1), full_table["num_atoms"])
    assert np.all(full_table["positions"][~atoms] == 0)
    assert set(np.unique(full_table["charges"])) == {0, 1, 6, 7, 8, 9}
    n_modes = 3 * full_table["num_atoms"] - 6
    counts = np.array([f.size for f in full_table["frequencies"]])
    linear = counts == n_modes + 1  # 3 n - 5 modes
    twice = counts == 2 * n_modes  # two runs of the 3 n - 6 frequencies in qm9pack
    assert np.all((counts == n_modes) | linear | twice)
    assert linear.sum() == 5 and twice.sum() == 334
    assert np.all(np.isfinite(full_table["positions"]))


def read_subset():
    if not SUBSET_CSV.is_file():
        pytest.skip(f"needs the offline QM9 subset {SUBSET_CSV}")
    with open(SUBSET_CSV, newline="") as handle:
        return {row["mol_id"]: row for row in csv.DictReader(handle)}


def test_atomization_energies_match_the_subset(full_table):
    """Every subset molecule in qm9pack (14,392 of 14,715 unique; the rest are among
    QM9's uncharacterized), property by property.

    Tolerance: ours are float32 Hartree, rounded from float64 differences of at most
    ~4 Ha, so within half a float32 ulp at 4 Ha, 2.4e-7 Ha = 1.5e-4 kcal/mol; the
    subset's own 9 decimals add 1e-9.
    """
    subset = read_subset()
    rows = {index: k for k, index in enumerate(full_table["index"])}
    matched = [(rows[int(m[4:])], r) for m, r in subset.items() if int(m[4:]) in rows]
    assert len(subset) == 14_715 and len(matched) == 14_392
    at = np.array([k for k, _ in matched])
    for target, total in SUBSET_TOTALS.items():
        theirs = np.array([float(r[f"{total}_atom"]) for _, r in matched])
        ours = full_table[f"{target}_atomization"][at].astype(np.float64)
        deviation = np.abs(ours * SUBSET_KCAL_PER_HARTREE - theirs).max()
        print(f"{target}_atomization: max deviation {deviation:.2e} kcal/mol")
        assert deviation < 1.5e-4
        totals = np.array([float(r[total]) for _, r in matched])
        np.testing.assert_allclose(full_table[target][at], totals, rtol=6e-8)


# --- molecule_arrays and the model-input functions --------------------------------


def test_molecule_arrays_pads_and_counts():
    positions, charges = qm9.molecule_arrays(
        [["O", "H", "H"], [6, 1, 1, 1, 1]],
        [np.ones((3, 3)), np.full((5, 3), 2.0)],
    )
    assert positions.shape == (2, 29, 3) and positions.dtype == np.float32
    assert charges.shape == (2, 29) and charges.dtype == np.int32
    np.testing.assert_array_equal(charges[0, :4], [8, 1, 1, 0])
    np.testing.assert_array_equal(charges[1, :6], [6, 1, 1, 1, 1, 0])
    assert np.all(positions[0, :3] == 1) and np.all(positions[0, 3:] == 0)
    assert np.all(positions[1, :5] == 2) and np.all(positions[1, 5:] == 0)


@pytest.mark.parametrize(
    ("atoms", "positions", "message"),
    [
        (["C", "Cl"], np.zeros((2, 3)), r"molecule 0 \(CCl\) contains 'Cl', outside"),
        ([6, 16], np.zeros((2, 3)), r"contains atomic number 16, outside QM9's"),
        (
            ["C"] * 30,
            np.zeros((30, 3)),
            r"\(CCl\) has 30 atoms; QM9 models take 1 to 29",
        ),
        (
            ["C", "H"],
            np.zeros((3, 3)),
            r"must have shape \(2, 3\). Received: shape \(3, 3",
        ),
        (
            [6.0],
            np.zeros((1, 3)),
            r"symbols or atomic numbers. Received: 6.0 \(float\)",
        ),
    ],
)
def test_molecule_arrays_rejects_bad_molecules(atoms, positions, message):
    error = TypeError if "Received: 6.0" in message else ValueError
    with pytest.raises(error, match=message):
        qm9.molecule_arrays([atoms], [positions], names=["CCl"])


def test_non_finite_positions_name_the_molecules():
    good = np.zeros((2, 3))
    bad = np.array([[0.0, np.nan, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(
        ValueError, match=r"2 of 3 molecules .* indices \[1, 2\]: molecule 1"
    ):
        qm9.molecule_arrays([["C", "O"]] * 3, [good, bad, np.full((2, 3), np.inf)])
    with pytest.raises(ValueError, match="from_smiles` with another seed"):
        qm9.molecule_arrays([["C", "O"]], [bad])


def test_from_xyz_reads_standard_and_qm9_files(tmp_path):
    standard = tmp_path / "two.xyz"
    standard.write_text(
        "3\nwater\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"
        "\n2\ncarbon monoxide, atomic numbers\n6 0 0 0\n8 0 0 1.128\n"
    )
    positions, charges = qm9.from_xyz(standard)
    assert positions.shape == (2, 29, 3) and charges.dtype == np.int32
    np.testing.assert_array_equal(charges[:, :3], [[8, 1, 1], [6, 8, 0]])
    assert positions[0, 1, 1] == np.float32(0.7572)
    qm9_file = tmp_path / "dsgdb9nsd_000001.xyz"
    qm9_file.write_text(
        "5\ngdb 1\t157.7118\t157.70997\t157.70699\t0.\t13.21\n"
        "C\t-0.0126981359\t 1.0858041578\t 0.0080009958\t-0.535689\n"
        "H\t 0.002150416\t-0.0060313176\t 0.0019761204\t 0.133921\n"
        "H\t 1.0117308433\t 1.4637511618\t 0.0002765748\t 0.133922\n"
        "H\t-0.540815069\t 1.4475266138\t-0.8766437152\t 0.133923\n"
        "H\t-0.5238136345\t 1.4379326443\t 6.8*^-6\t 0.133923\n"
        "1341.307\t1341.3284\t1341.365\t1562.6731\t1562.7453\n"
        "C\tC\t\nInChI=1S/CH4/h1H4\tInChI=1S/CH4/h1H4\n"
    )
    positions, charges = qm9.from_xyz(qm9_file)
    assert positions.shape == (1, 29, 3)
    np.testing.assert_array_equal(charges[0, :6], [6, 1, 1, 1, 1, 0])
    assert positions[0, 4, 2] == np.float32(6.8e-6)


def test_from_xyz_errors_name_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="No .xyz file at"):
        qm9.from_xyz(tmp_path / "absent.xyz")
    truncated = tmp_path / "truncated.xyz"
    truncated.write_text("3\nwater\nO 0 0 0\nH 0 0 1\n")
    with pytest.raises(
        ValueError, match=r"line 1: the file ends after 2 of the .* 3 atoms"
    ):
        qm9.from_xyz(truncated)
    garbled = tmp_path / "garbled.xyz"
    garbled.write_text("1\nmethane?\nC 0 zero 0\n")
    with pytest.raises(
        ValueError, match=r"garbled.xyz, line 3: expected 'symbol x y z'"
    ):
        qm9.from_xyz(garbled)
    heavy = tmp_path / "heavy.xyz"
    heavy.write_text("2\n\nS 0 0 0\nO 0 0 1.5\n")
    with pytest.raises(
        ValueError, match=r"molecule 0 \(heavy.xyz #0 ''\) contains 'S'"
    ):
        qm9.from_xyz(heavy)


def test_from_atoms_pair_and_ase():
    xyz = [[0, 0, 0], [0, 0, 1.1]]
    positions, charges = qm9.from_atoms(["C", "O"], xyz)
    assert positions.shape == (1, 29, 3) and charges[0, :3].tolist() == [6, 8, 0]
    ase = pytest.importorskip("ase")
    molecule = ase.Atoms("CO", positions=xyz)
    from_ase, ase_charges = qm9.from_atoms([molecule, molecule])
    assert from_ase.shape == (2, 29, 3)
    np.testing.assert_array_equal(from_ase[0], positions[0])
    np.testing.assert_array_equal(qm9.from_atoms(molecule)[1], charges)
    with pytest.raises(TypeError, match="carry their positions"):
        qm9.from_atoms(molecule, xyz)
    with pytest.raises(TypeError, match=r"\(symbols, positions\) of one molecule"):
        qm9.from_atoms(["C", "O"])
    with pytest.raises(ValueError, match=r"\(CSi\) contains 'Si'"):
        qm9.from_atoms(ase.Atoms("CSi", positions=xyz))


def test_from_smiles_gives_reproducible_mmff_geometries():
    pytest.importorskip("rdkit")
    positions, charges = qm9.from_smiles(["CCO", "C#N"], seed=0)
    assert positions.shape == (2, 29, 3) and charges.dtype == np.int32
    np.testing.assert_array_equal(
        np.sort(charges[0][charges[0] > 0]), [1] * 6 + [6, 6, 8]
    )
    np.testing.assert_array_equal(charges[1, :4], [6, 7, 1, 0])
    bond = np.linalg.norm(positions[0, 0] - positions[0, 1])  # C-C, MMFF94
    assert 1.45 < bond < 1.57
    again, _ = qm9.from_smiles("CCO", seed=0)
    np.testing.assert_array_equal(again[0], positions[0])


def test_from_smiles_errors():
    pytest.importorskip("rdkit")
    with pytest.raises(ValueError, match=r"cannot parse these SMILES: \['C\(\('\]"):
        qm9.from_smiles(["CC", "C(("])
    with pytest.raises(ValueError, match=r"molecule 0 \(CCl\) contains 'Cl', outside"):
        qm9.from_smiles("CCl")
    with pytest.raises(ValueError, match=r"has 32 atoms; QM9 models take 1 to 29"):
        qm9.from_smiles("CCCCCCCCCC")


# --- the TFDS source -----------------------------------------------------------------


def test_tfds_source_converts_to_the_same_columns():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        table = qm9.load("validation", "dimenet", source="tfds")
    assert set(table) == set(qm9.FEATURES) | {"SMILES_relaxed", "InChI_relaxed"}
    for name, (shape, dtype, _) in qm9.FEATURES.items():
        if dtype == "str":
            assert all(isinstance(value, str) for value in table[name]), name
        elif shape == (None,):
            assert all(value.dtype == np.float32 for value in table[name])
        else:
            assert table[name].dtype == np.dtype(dtype), name
            assert table[name].shape == (6, *shape), name
    assert np.all(np.diff(table["index"]) >= 0)  # rows in ascending index
