"""Rotation benchmark: rotate_field of 2048 x 2048 maps, rotate_coefficients by L.

What is measured (float32 maps, complex64 coefficients), each case in its own
subprocess so that its peak resident set size (``ru_maxrss``) is its own:

* ``field``: ``rotate_field`` of one real spin-0 2048 x 2048 map (L = 1023) by fixed ZYZ
  angles, eagerly, as a user calls it. Setup is ``sht_plan(grid)`` (the transform
  tables, loaded from keras_sphere's disk cache, or built with ``--cold``); then the
  first call (compiles the transforms) and the median of ``--repeats`` calls; the
  rotation of the coefficients alone (``rotate_coefficients``) is timed too. The map is
  band-limited (synthesised from random coefficients), so rotating it forward and back
  must give it back: ``roundtrip_rel_error`` = max |f'' - f| / max |f|.
* ``coefficients``: ``rotate_coefficients`` of one complex64 coefficient array at each
  bandlimit of ``L_VALUES``: first call (builds the Delta table where one is used) and
  the median of further calls, peak RSS.
* ``crossover`` (``--crossover``, one subprocess): the two ways to rotate at each L of
  ``CROSSOVER_L``, called through their private functions: the cached Delta table
  (``_rotate_with_tables``, warm, eager and jitted with traced angles) and the
  degree-by-degree recursion (``_rotate_by_degree_numpy``); it sets
  ``rotation._TABLE_MAX_ELL``.
* ``healpy`` (peer, when importable): ``healpy.rotate_alm`` (HEALPix C++, float64, the
  m >= 0 half of a real field's coefficients, i.e. half our work) at L = 1023.

Targets (issue 21, item 6): rotate_field of a 2048 x 2048 map under 4 GB peak and under
a minute per map on the 2-core CPU.

Usage::

    PYTHONPATH=. python benchmarks/rotation.py          # field, L sweep, healpy
    PYTHONPATH=. python benchmarks/rotation.py --cases field --cold
    PYTHONPATH=. python benchmarks/rotation.py --crossover --cases
    PYTHONPATH=. python benchmarks/rotation.py --crossover \
        --json benchmarks/results/rotation_cpu.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import numpy as np
from _runner import Result
from _runner import case_env
from _runner import cpu_sample
from _runner import environment_record
from _runner import fmt
from _runner import others_busy
from _runner import peak_rss_mb
from _runner import print_environment
from _runner import report_case
from _runner import run_marked
from _runner import wait_for_idle

SEED = 20261121
FIELD_L = 1023
ANGLES = (0.3, 1.1, -0.7)  # alpha, beta, gamma (radians)
INVERSE = (0.7, -1.1, -0.3)  # (-gamma, -beta, -alpha)
L_VALUES = (64, 80, 81, 128, 256, 512, 1023)
CROSSOVER_L = (32, 48, 64, 80, 96, 112, 128, 160, 192)
CASE_TIMEOUT_S = 1800.0
PACKAGES = ["jax", "jaxlib", "numpy", "scipy", "healpy"]
TARGET_S, TARGET_GB = 60.0, 4.0


def random_coefficients(ell_max: int, real_field: bool = False) -> np.ndarray:
    from keras_sphere.testing import random_coefficients as draw

    rng = np.random.default_rng(SEED)
    return draw(rng, ell_max, real_field=real_field).astype(np.complex64)


def time_calls(call, repeats: int) -> tuple[float, float]:
    """(first call s, median of `repeats` further calls s)."""
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


# --------------------------------------------------------------------------------------
# Cases (each runs in its own subprocess).


def run_field(spec: Result) -> Result:
    import jax

    from keras_sphere.sphere import Grid
    from keras_sphere.sphere import isht
    from keras_sphere.sphere import rotate_coefficients
    from keras_sphere.sphere import rotate_field
    from keras_sphere.sphere import sht
    from keras_sphere.sphere import sht_plan

    base_mb = peak_rss_mb()
    grid = Grid(2 * (FIELD_L + 1), 2 * (FIELD_L + 1))
    start = time.perf_counter()
    jax.block_until_ready(sht_plan(grid, FIELD_L, 0, "float32"))
    setup_s = time.perf_counter() - start
    coeffs = random_coefficients(FIELD_L, real_field=True)
    field = np.asarray(isht(coeffs, grid, is_real=True))

    def call():
        return jax.block_until_ready(rotate_field(field, grid, ANGLES))

    first, median = time_calls(call, spec["repeats"])
    rotated = call()
    back = np.asarray(rotate_field(rotated, grid, INVERSE))
    error = float(np.abs(back - field).max() / np.abs(field).max())
    analysed = jax.block_until_ready(sht(field, grid))
    rotation_first, rotation_s = time_calls(
        lambda: jax.block_until_ready(rotate_coefficients(analysed, *ANGLES)), 1
    )
    return {
        "status": "ok",
        "s_per_map": median,
        "first_call_s": first,
        "setup_s": setup_s,
        "rotate_coefficients_s": rotation_s,
        "roundtrip_rel_error": error,
        "peak_rss_mb": peak_rss_mb(),
        "import_rss_mb": base_mb,
    }


def run_coefficients(spec: Result) -> Result:
    import jax

    from keras_sphere.sphere import rotate_coefficients

    base_mb = peak_rss_mb()
    coeffs = random_coefficients(spec["L"])

    def call():
        return jax.block_until_ready(rotate_coefficients(coeffs, *ANGLES))

    first, median = time_calls(call, spec["repeats"])
    back = np.asarray(rotate_coefficients(call(), *INVERSE))
    error = float(np.abs(back - coeffs).max() / np.abs(coeffs).max())
    return {
        "status": "ok",
        "s_per_call": median,
        "first_call_s": first,
        "roundtrip_rel_error": error,
        "peak_rss_mb": peak_rss_mb(),
        "import_rss_mb": base_mb,
    }


def run_crossover(spec: Result) -> Result:
    """Both rotation methods at each L (private functions: this chooses the switch)."""
    import jax
    import jax.numpy as jnp

    from keras_sphere.sphere.rotation import _delta_tables
    from keras_sphere.sphere.rotation import _rotate_by_degree_numpy
    from keras_sphere.sphere.rotation import _rotate_with_tables

    rows = []
    for ell_max in spec["crossover_L"]:
        coeffs = jnp.asarray(random_coefficients(ell_max))

        def tables(coeffs=coeffs):
            return jax.block_until_ready(
                _rotate_with_tables(coeffs, *ANGLES, "float32")
            )

        jitted = jax.jit(
            lambda a, beta: _rotate_with_tables(
                a, ANGLES[0], beta, ANGLES[2], "float32"
            )
        )
        build_s, tables_s = time_calls(tables, spec["repeats"])
        jitted_first, jitted_s = time_calls(
            lambda coeffs=coeffs, jitted=jitted: jax.block_until_ready(
                jitted(coeffs, ANGLES[1])
            ),
            spec["repeats"],
        )
        host = np.asarray(coeffs)
        _, recursion_s = time_calls(
            lambda host=host: _rotate_by_degree_numpy(host, *ANGLES), spec["repeats"]
        )
        _delta_tables.cache_clear()
        rows.append(
            {
                "L": ell_max,
                "tables_s": tables_s,
                "tables_jit_s": jitted_s,
                "tables_first_call_s": build_s,
                "recursion_s": recursion_s,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"status": "ok", "rows": rows, "peak_rss_mb": peak_rss_mb()}


def run_healpy(spec: Result) -> Result:
    import healpy

    base_mb = peak_rss_mb()
    ell_max = spec["L"]
    coeffs = random_coefficients(ell_max, real_field=True).astype(np.complex128)
    ells, orders = healpy.Alm.getlm(ell_max)
    alm = coeffs[ells, ell_max + orders]

    def call():
        rotated = alm.copy()
        healpy.rotate_alm(rotated, ANGLES[2], ANGLES[1], ANGLES[0], lmax=ell_max)
        return rotated

    first, median = time_calls(call, spec["repeats"])
    return {
        "status": "ok",
        "s_per_call": median,
        "first_call_s": first,
        "peak_rss_mb": peak_rss_mb(),
        "import_rss_mb": base_mb,
    }


RUNNERS = {
    "field": run_field,
    "coefficients": run_coefficients,
    "crossover": run_crossover,
    "healpy": run_healpy,
}


def spawn_case(spec: Result, cold: bool) -> Result:
    env = case_env()
    if cold:
        env["KERAS_SPHERE_CACHE"] = "off"  # setup = building the transform tables
    command = [sys.executable, str(pathlib.Path(__file__).resolve())]
    command += ["--case", json.dumps(spec)]
    before = cpu_sample()
    record = run_marked(command, env, CASE_TIMEOUT_S)
    record["others_busy"] = others_busy(before, cpu_sample())
    return {**spec, **record}


# --------------------------------------------------------------------------------------
# Output.


def summary(results: list[Result]) -> str:
    lines = []
    for record in results:
        name, status = record["case"], record.get("status")
        if status != "ok":
            lines.append(f"{name} L={record.get('L')}: {status} {record.get('note')}")
            continue
        busy = fmt(record.get("others_busy"), ".2f")
        if name == "field":
            lines.append(
                f"rotate_field 2048 x 2048, L = {FIELD_L}: "
                f"{record['s_per_map']:.2f} s/map (first call "
                f"{record['first_call_s']:.1f} s, setup {record['setup_s']:.1f} s, "
                f"rotate_coefficients {record['rotate_coefficients_s']:.2f} s), "
                f"peak {record['peak_rss_mb'] / 1024:.2f} GiB, round trip "
                f"{record['roundtrip_rel_error']:.1e}, others busy {busy}"
            )
        elif name in ("coefficients", "healpy"):
            error = fmt(record.get("roundtrip_rel_error"), ".1e")
            lines.append(
                f"{name} L = {record['L']}: {record['s_per_call']:.4f} s/call "
                f"(first {record['first_call_s']:.3f} s), peak "
                f"{record['peak_rss_mb'] / 1024:.2f} GiB, round trip {error}, "
                f"others busy {busy}"
            )
        elif name == "crossover":
            lines.append("crossover (s per call): L | tables | tables jit | recursion")
            for row in record["rows"]:
                lines.append(
                    f"  {row['L']:4d} | {row['tables_s']:.4f} | "
                    f"{row['tables_jit_s']:.4f} | {row['recursion_s']:.4f}"
                )
    return "\n".join(lines)


def verdict(results: list[Result]) -> str | None:
    for record in results:
        if record["case"] == "field" and record.get("status") == "ok":
            peak_gb = record["peak_rss_mb"] * 2**20 / 1e9
            met = record["s_per_map"] <= TARGET_S and peak_gb <= TARGET_GB
            return (
                f"targets (<= {TARGET_S:.0f} s per map, <= {TARGET_GB} GB peak): "
                f"{record['s_per_map']:.1f} s, {peak_gb:.2f} GB: "
                f"{'met' if met else 'NOT met'}"
            )
    return None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cases",
        nargs="*",
        default=["field", "coefficients", "healpy"],
        choices=["field", "coefficients", "healpy"],
    )
    parser.add_argument("--L", type=int, nargs="+", default=list(L_VALUES))
    parser.add_argument("--crossover", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cold",
        action="store_true",
        help="build the transform tables (KERAS_SPHERE_CACHE=off) instead of loading",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each case, wait up to this long for other processes to go quiet",
    )
    parser.add_argument("--json", type=pathlib.Path, help="write results here")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def case_specs(args) -> list[Result]:
    specs = []
    if "field" in args.cases:
        specs.append({"case": "field", "L": FIELD_L})
    if "coefficients" in args.cases:
        specs += [{"case": "coefficients", "L": ell_max} for ell_max in args.L]
    if "healpy" in args.cases:
        specs.append({"case": "healpy", "L": FIELD_L})
    if args.crossover:
        specs.append({"case": "crossover", "crossover_L": list(CROSSOVER_L)})
    for spec in specs:
        spec["repeats"] = args.repeats
    return specs


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.case:
        spec = json.loads(args.case)
        report_case(lambda: RUNNERS[spec["case"]](spec))
        return
    settings = {
        "cases": args.cases,
        "L": args.L,
        "crossover_L": list(CROSSOVER_L) if args.crossover else None,
        "repeats": args.repeats,
        "cold": args.cold,
        "angles": ANGLES,
    }
    info = environment_record(settings, PACKAGES, dtype="float32")
    print_environment(info, "float32")
    results = []
    started = time.perf_counter()
    for spec in case_specs(args):
        wait_for_idle(args.wait_idle)
        record = spawn_case(spec, args.cold)
        results.append(record)
        print(
            f"[{time.perf_counter() - started:6.0f} s] {spec['case']} "
            f"L={spec.get('L', '-')}: {record.get('status')}",
            flush=True,
        )
    print(summary(results))
    line = verdict(results)
    if line:
        print(line)
    info["total_s"] = time.perf_counter() - started
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"environment": info, "results": results}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
