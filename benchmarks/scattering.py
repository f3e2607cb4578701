"""Scattering benchmark: time and peak memory per map, keras_sphere next to ducc0.

What is measured, per bandlimit L (maps of 2(L + 1) x 2(L + 1)), depth 2, J0 = 4,
oversample 1, lam = 2, float32, spatial output:

* time per map: one call on B maps divided by B, median of ``--repeats`` calls after a
  warm-up call (which also compiles);
* setup: building (or, with ``--disk-cache``, loading) the transform tables of every
  bandlimit the network uses; compile: the first call minus a timed call;
* peak memory: each (library, L, B) case runs in its own subprocess and reports its
  peak resident set size (``ru_maxrss``): tables + data + compiled program + scratch.

keras_sphere: ``scatter_channels`` (the function behind ``ScatteringLayer`` and
``scattering_features``) with the network's plans, one jitted program per call.

Peer, run side by side in the same way: **the same scattering network on ducc0's
SHTs** (the fastest CPU SHT library we know; ``ducc0.sht.experimental``, geometry "CC",
i.e. the same grid, nthreads = 2). For every node of the same path tree it synthesises
W = SHT^-1(kappa_j a) with ``synthesis_2d``, takes |W| and projects it back with the
Clenshaw-Curtis quadrature ``adjoint_synthesis_2d`` (what keras_sphere's forward SHT
computes on these grids), with the same kernels, bandlimits and order; maps are
processed one at a time (ducc0 has no batch axis), float32 maps and float64 kernel
products as ducc0 does them. Both sides get the same seeded white-noise maps and the
script reports the largest relative difference of their outputs.

Targets (issue 4): <= 2 s and <= 8 GB per 2048 x 2048 map (L = 1023) on a 2-core CPU.

Usage::

    PYTHONPATH=. python benchmarks/scattering.py                  # L = 255 and 1023
    PYTHONPATH=. python benchmarks/scattering.py --L 255 --batch 1 4
    PYTHONPATH=. python benchmarks/scattering.py --disk-cache \
        --json benchmarks/results/scattering_cpu.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import statistics
import sys
import tempfile
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
J0 = 4
DEPTH = 2
NTHREADS = 2
CASE_TIMEOUT_S = 1800.0
PACKAGES = ["jax", "jaxlib", "numpy", "ducc0"]
TARGET_S, TARGET_GB = 2.0, 8.0


def white_maps(n: int, batch: int) -> np.ndarray:
    return np.random.default_rng(SEED).standard_normal((batch, n, n)).astype(np.float32)


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
# keras_sphere.


def run_keras_sphere(ell_max: int, batch: int, repeats: int, output_path) -> Result:
    import jax

    from keras_sphere.layers.scattering_layer import scatter_channels
    from keras_sphere.sphere import Grid
    from keras_sphere.sphere.scattering import ScatteringNetwork

    grid = Grid.for_bandlimit(ell_max)
    network = ScatteringNetwork(grid, ell_max, J0, DEPTH)
    base_mb = peak_rss_mb()
    start = time.perf_counter()
    plans = jax.block_until_ready(network.plans())
    setup_s = time.perf_counter() - start
    maps = white_maps(grid.n_lat, batch)[..., None]

    def call():
        return jax.block_until_ready(scatter_channels(maps, network, "spatial", plans))

    first, median = time_calls(call, repeats)
    np.save(output_path, np.asarray(call())[0])
    return {
        "status": "ok",
        "s_per_map": median / batch,
        "setup_s": setup_s,
        "compile_s": first - median,
        "peak_rss_mb": peak_rss_mb(),
        "import_rss_mb": base_mb,
        "table_gb": network.table_bytes() / 1e9,
        "n_paths": network.n_paths,
    }


# --------------------------------------------------------------------------------------
# ducc0: the same network on ducc0's transforms.


@functools.cache
def _alm_index(ell_max: int) -> tuple[np.ndarray, np.ndarray]:
    """(ell, m) of each entry of ducc0's m-major alm layout for `ell_max`."""
    ells, orders = [], []
    for m in range(ell_max + 1):
        ells.append(np.arange(m, ell_max + 1))
        orders.append(np.full(ell_max + 1 - m, m))
    return np.concatenate(ells), np.concatenate(orders)


def _position(ell_max: int, ell: np.ndarray, m: np.ndarray) -> np.ndarray:
    return m * (2 * ell_max + 1 - m) // 2 + ell


def run_ducc0(ell_max: int, batch: int, repeats: int, output_path) -> Result:
    from ducc0.sht import experimental as sht

    from keras_sphere.sphere import Grid
    from keras_sphere.sphere.scattering import ScatteringNetwork

    network = ScatteringNetwork(Grid.for_bandlimit(ell_max), ell_max, J0, DEPTH)
    bank = network.filters
    base_mb = peak_rss_mb()
    start = time.perf_counter()
    weights = {}  # per grid size, CC weights as in keras_sphere's quadrature

    def weight(n):
        if n not in weights:
            weights[n] = (sht.get_gridweights("CC", n) / n)[:, None].astype(np.float32)
        return weights[n]

    def forward(field, ell):
        n = field.shape[-1]
        return sht.adjoint_synthesis_2d(
            map=(field * weight(n))[None],
            spin=0,
            lmax=ell,
            geometry="CC",
            nthreads=NTHREADS,
        )[0]

    def inverse(alm, ell):
        n = 2 * (max(ell, 1) + 1)
        return sht.synthesis_2d(
            alm=alm[None],
            spin=0,
            lmax=ell,
            geometry="CC",
            ntheta=n,
            nphi=n,
            nthreads=NTHREADS,
        )[0]

    def filtered(alm, source, kernel, band, target):
        """Degrees <= band of `alm` (layout of `source`) times kernel[ell], in the
        layout of `target` (zero above band)."""
        ell, m = _alm_index(band)
        out = np.zeros((target + 1) * (target + 2) // 2, np.complex128)
        out[_position(target, ell, m)] = alm[_position(source, ell, m)] * kernel[ell]
        return out

    setup_s = time.perf_counter() - start

    def one(field):
        coeffs = [(forward(field, ell_max), ell_max)]
        for node in network.nodes[1:]:
            parent, source = coeffs[node.parent]
            kernel = bank.kernel(node.scale)
            alm = filtered(parent, source, kernel, node.band, node.work)
            modulus = np.abs(inverse(alm, node.work)).astype(np.float32)
            coeffs.append((forward(modulus, node.work), node.work))
        low = network.output_bandlimit
        grid_ell = max(low, 1)
        return np.stack(
            [
                inverse(filtered(c, ell, bank.scaling, low, grid_ell), grid_ell)
                for c, ell in coeffs
            ],
            axis=-1,
        )

    maps = white_maps(2 * (ell_max + 1), batch)

    def call():
        return [one(field) for field in maps]

    first, median = time_calls(call, repeats)
    np.save(output_path, call()[0])
    return {
        "status": "ok",
        "s_per_map": median / batch,
        "setup_s": setup_s,
        "compile_s": None,
        "peak_rss_mb": peak_rss_mb(),
        "import_rss_mb": base_mb,
        "n_paths": network.n_paths,
    }


# --------------------------------------------------------------------------------------
# Cases and output.

RUNNERS = {"keras_sphere": run_keras_sphere, "ducc0": run_ducc0}


def case_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    runner = RUNNERS[spec["library"]]
    report_case(
        lambda: runner(spec["L"], spec["batch"], spec["repeats"], spec["output"])
    )


def spawn_case(spec: Result, disk_cache: bool) -> Result:
    env = case_env()
    if not disk_cache:
        env["KERAS_SPHERE_CACHE"] = "off"  # setup = table build
    command = [sys.executable, str(pathlib.Path(__file__).resolve())]
    command += ["--case", json.dumps(spec)]
    before = cpu_sample()
    record = run_marked(command, env, CASE_TIMEOUT_S)
    record["others_busy"] = others_busy(before, cpu_sample())
    return {**spec, **record}


def agreement(results: list[Result]) -> None:
    """Add the largest relative difference between keras_sphere and ducc0 outputs."""
    for record in results:
        if record["library"] != "ducc0" or record.get("status") != "ok":
            continue
        ours = [
            r
            for r in results
            if r["library"] == "keras_sphere"
            and r["L"] == record["L"]
            and r.get("status") == "ok"
        ]
        if ours:
            peer = np.load(record["output"])
            mine = np.load(ours[0]["output"])
            record["max_rel_diff_vs_keras_sphere"] = float(
                np.abs(peer - mine).max() / np.abs(peer).max()
            )


def table(results: list[Result]) -> str:
    lines = [
        "| library | L | maps/call | s per map | ducc0 / ours | setup s | compile s "
        "| peak RSS GB | max rel diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for record in results:
        if record.get("status") != "ok":
            lines.append(
                f"| {record['library']} | {record['L']} | {record['batch']} | "
                f"{record.get('status')}: {record.get('note', '')[:80]} |||||||"
            )
            continue
        ratio = None
        if record["library"] == "keras_sphere":
            peers = [
                r["s_per_map"]
                for r in results
                if r["library"] == "ducc0"
                and r["L"] == record["L"]
                and r.get("status") == "ok"
            ]
            ratio = peers[0] / record["s_per_map"] if peers else None
        lines.append(
            f"| {record['library']} | {record['L']} | {record['batch']} | "
            f"{fmt(record['s_per_map'], '.3f')} | {fmt(ratio, '.1f')} | "
            f"{fmt(record['setup_s'], '.1f')} | {fmt(record['compile_s'], '.1f')} | "
            f"{fmt(record['peak_rss_mb'] / 1024, '.2f')} | "
            f"{fmt(record.get('max_rel_diff_vs_keras_sphere'), '.1e')} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--L", type=int, nargs="+", default=[255, 1023])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--peers", nargs="*", default=["ducc0"], choices=["ducc0"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--disk-cache",
        action="store_true",
        help="let keras_sphere read its table cache (setup = load, not build)",
    )
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--json", type=pathlib.Path, help="write results here")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.case:
        case_main(args.case)
        return
    settings = {
        "L": args.L,
        "batch": args.batch,
        "J0": J0,
        "depth": DEPTH,
        "oversample": 1,
        "peers": args.peers,
        "repeats": args.repeats,
        "disk_cache": args.disk_cache,
    }
    info = environment_record(settings, PACKAGES, dtype="float32", nthreads=NTHREADS)
    print_environment(info, "float32")
    results = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for ell_max in args.L:
            specs = [("keras_sphere", b) for b in args.batch]
            specs += [(peer, 1) for peer in args.peers]
            for library, batch in specs:
                wait_for_idle(args.wait_idle)
                spec = {
                    "library": library,
                    "L": ell_max,
                    "batch": batch,
                    "repeats": args.repeats,
                    "output": os.path.join(scratch, f"{library}_{ell_max}_{batch}.npy"),
                }
                record = spawn_case(spec, args.disk_cache)
                results.append(record)
                print(
                    f"[{time.perf_counter() - started:6.0f} s] {library} L={ell_max} "
                    f"B={batch}: {record.get('status')} "
                    f"{fmt(record.get('s_per_map'), '.3f')} s/map",
                    flush=True,
                )
        agreement(results)
    for record in results:
        record.pop("output", None)
    print(table(results))
    for record in results:
        if record["library"] == "keras_sphere" and record["L"] == 1023:
            if record.get("status") == "ok":
                met = (
                    record["s_per_map"] <= TARGET_S
                    and record["peak_rss_mb"] / 1024 <= TARGET_GB
                )
                print(
                    f"L = 1023, {record['batch']} map(s) per call: "
                    f"{record['s_per_map']:.2f} s/map, "
                    f"peak {record['peak_rss_mb'] / 1024:.1f} GB "
                    f"(target <= {TARGET_S} s, <= {TARGET_GB} GB): "
                    f"{'met' if met else 'NOT met'}"
                )
    info["total_s"] = time.perf_counter() - started
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"environment": info, "results": results}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
