"""Predict QM9 properties of molecules with the pretrained qm9 (or qm9_h) preset.

Loads the preset with one call, builds geometries for a few molecules from SMILES
(RDKit ETKDG + MMFF94, extra ``[qm9]``) and takes three held-out QM9 test molecules
with their DFT geometries and labels, then prints a table of the preset's properties
with units (energies in eV; U0, U, H, G are atomization energies): all 12 for
``qm9``, H alone for ``qm9_h``.

    python examples/qm9_predict.py
    python examples/qm9_predict.py --smiles CCO c1ccccc1 --xyz my_molecule.xyz
    python examples/qm9_predict.py --preset qm9_h

Measured on 2 CPU cores shared with other jobs (``/usr/bin/time -v``), QM9 already
parsed into its cache: 34 s (33 s of CPU time), peak memory 1.7 GiB.
"""

from __future__ import annotations

import argparse

import numpy as np

import keras_sphere
from keras_sphere.data import qm9
from keras_sphere.models.qm9 import TARGETS

HARTREE_IN_EV = 27.2114  # energies are printed in eV


def display(name: str, value: float) -> tuple[float, str]:
    if TARGETS[name]["unit"] == "Ha":
        return value * HARTREE_IN_EV, "eV"
    return value, TARGETS[name]["unit"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="qm9", help="qm9 (12 targets) or qm9_h")
    parser.add_argument("--smiles", nargs="*", default=["CCO", "c1ccccc1", "CC(=O)N"])
    parser.add_argument("--xyz", nargs="*", default=[], help=".xyz files")
    parser.add_argument("--test-molecules", type=int, default=3)
    args = parser.parse_args(argv)

    model = keras_sphere.zoo.load(args.preset)
    names, positions, charges, labels = [], [], [], []
    for smiles in args.smiles:
        p, c = qm9.from_smiles(smiles)
        names.append(smiles)
        positions.append(p[0])
        charges.append(c[0])
        labels.append(None)
    for path in args.xyz:
        p, c = qm9.from_xyz(path)
        names += [f"{path}[{i}]" for i in range(len(p))]
        positions += list(p)
        charges += list(c)
        labels += [None] * len(p)
    if args.test_molecules:
        test = qm9.load("test", verbose=0)  # held out from training (dimenet split)
        for row in range(args.test_molecules):
            names.append(f"QM9 #{test['index'][row]} {test['SMILES'][row]}")
            positions.append(test["positions"][row])
            charges.append(test["charges"][row])
            labels.append({t: float(test[TARGETS[t]["label"]][row]) for t in TARGETS})
    predictions = model.predict((np.stack(positions), np.stack(charges)), verbose=0)
    for index, name in enumerate(names):
        print(f"\n{name}")
        for target in model.targets:
            value, unit = display(target, float(predictions[target][index]))
            line = f"  {target:<6} {value:12.4f} {unit}"
            if labels[index] is not None:
                true, _ = display(target, labels[index][target])
                line += f"   (QM9 {true:.4f})"
            print(line)
    return predictions


if __name__ == "__main__":
    main()
