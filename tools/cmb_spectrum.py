"""Regenerate the CMB temperature power spectrum stored with keras-sphere.

Computes the lensed TT spectrum C_ell (uK^2, ell = 0 ... 3000) with CAMB for the
Planck 2018 best-fit LCDM parameters (``models.md`` section 3.3) and writes it to
``keras_sphere/data/cmb_planck2018_tt.npz`` with the parameters and CAMB's version.
Only this script needs CAMB (``pip install "keras-sphere[cmb]"``).

    python tools/cmb_spectrum.py
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

PARAMETERS = {
    "H0": 67.36,
    "ombh2": 0.02237,
    "omch2": 0.1200,
    "tau": 0.0544,
    "As": 2.1e-9,
    "ns": 0.9649,
}
ELL_MAX = 3000
OUTPUT = pathlib.Path(__file__).parents[1] / "keras_sphere/data/cmb_planck2018_tt.npz"


def lensed_tt(ell_max: int = ELL_MAX) -> np.ndarray:
    """Lensed TT C_ell in uK^2 for ell = 0 ... ell_max (C_0 = C_1 = 0)."""
    import camb

    params = camb.set_params(
        H0=PARAMETERS["H0"],
        ombh2=PARAMETERS["ombh2"],
        omch2=PARAMETERS["omch2"],
        tau=PARAMETERS["tau"],
        As=PARAMETERS["As"],
        ns=PARAMETERS["ns"],
        lmax=ell_max + 500,  # lensing needs headroom above the kept degrees
        lens_potential_accuracy=1,
    )
    results = camb.get_results(params)
    # raw_cl=True gives C_ell (not D_ell = ell (ell + 1) C_ell / 2 pi) in uK^2.
    spectra = results.get_cmb_power_spectra(
        params, CMB_unit="muK", raw_cl=True, lmax=ell_max
    )
    cl = np.array(spectra["total"][: ell_max + 1, 0], dtype=np.float64)
    cl[:2] = 0.0
    return cl


def main(argv=None) -> None:
    import camb

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args(argv)
    cl = lensed_tt()
    ell = np.arange(cl.size)
    peak = int(np.argmax(ell * (ell + 1) * cl))
    np.savez(
        args.output,
        cl=cl,
        parameter_names=np.array(list(PARAMETERS)),
        parameter_values=np.array(list(PARAMETERS.values())),
        camb_version=np.array(camb.__version__),
    )
    d_peak = peak * (peak + 1) * cl[peak] / (2 * np.pi)
    print(
        f"wrote {args.output}: lmax {cl.size - 1}, D_ell peak {d_peak:.1f} uK^2 "
        f"at ell = {peak}, CAMB {camb.__version__}"
    )


if __name__ == "__main__":
    main()
