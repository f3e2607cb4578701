"""SHT benchmark: keras_sphere next to ducc0, s2fft and torch-harmonics on CPU.

What is measured, per (bandlimit L, batch C, spin) and per library:

* time of one forward + inverse transform per map: the time of one call on C maps
  divided by C, after a warm-up; each repeat runs the call back to back enough times to
  last >= ``MIN_REPEAT_S`` and the reported value is the minimum over ``--repeats``
  repeats (fewer when a call is so slow that the repeats would exceed
  ``CASE_BUDGET_S``);
* compile time (JAX libraries: ``jax.jit(...).lower(...).compile()``) and setup time
  (building the tables or kernels the transform needs, from scratch: keras_sphere runs
  with ``KERAS_SPHERE_CACHE=off`` here, so its disk cache is never read);
* peak memory: every (library, case) runs in its own subprocess and reports the growth
  of its peak resident set size (``ru_maxrss``) above what it used once its libraries
  were imported, i.e. tables + data + compiled programs + scratch;
* round-trip error: random band-limited coefficients (in each library's own layout and
  conventions) are synthesised to fields f, which go through forward + inverse once; the
  error is max |f' - f| / max |f| over the batch.

Maps are float32 (complex64 coefficients) on keras_sphere's square grid
n x n = 2(L + 1) x 2(L + 1), equiangular with both poles, for keras_sphere, ducc0
(geometry "CC", the same grid) and torch-harmonics (grid "equiangular", the same grid).
s2fft has no such grid: it runs on its "mwss" grid (L + 2 rows, both poles, 2L + 2
columns) at the same bandlimit (s2fft's exclusive L is ours + 1).

* keras_sphere: ``plan = sht_plan(grid, L, spin)``; one jitted call on (C, n, n) maps,
  real float32 (``is_real=True`` path) for spin 0, complex64 for other spins.
* ducc0: ``analysis_2d`` + ``synthesis_2d`` (the exact transform pair), nthreads=2,
  looping over the C maps; a spin-0 map is (1, n, n) real, a spin-1 map is (2, n, n)
  (two real components of one complex spin-1 field). Also recorded: the quadrature pair
  ``adjoint_synthesis_2d`` on Clenshaw-Curtis weighted maps + ``synthesis_2d`` (exact on
  this grid too; ``ducc0_quadrature``).
* s2fft: its precompute transforms (``precompute_transforms.spherical``, method "jax"),
  vmapped over the batch, kernels built in float64 (x64 enabled while building, which
  its float32 recursion needs for accuracy) then cast to float32.
* torch-harmonics: ``RealSHT`` / ``InverseRealSHT`` (spin 0) or ``RealVectorSHT`` /
  ``InverseRealVectorSHT`` (spin 1: a tangent vector field, two real components) with
  lmax = mmax = L + 1, buffers cast to float32, ``torch.set_num_threads(2)``.

A peer that cannot be imported is skipped with a note. ``--large`` adds one
2048 x 2048 map (L = 1023, spin 0, C = 1): forward and inverse timed separately, table
build (or disk-cache load) time and peak RSS (absolute), keras_sphere with its default
disk cache, next to ducc0.

Usage::

    PYTHONPATH=. python benchmarks/sht.py                      # the default grid
    PYTHONPATH=. python benchmarks/sht.py --L 64 --batch 1 --peers ducc0
    PYTHONPATH=. python benchmarks/sht.py --large --L          # only the large case
    PYTHONPATH=. python benchmarks/sht.py --json benchmarks/results/sht_cpu.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from _runner import IDLE_BUSY_MAX
from _runner import Result
from _runner import add_load_arguments
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
from _runner import wait_for_memory

L_VALUES = (32, 64, 128, 256)
BATCHES = (1, 64)
SPINS = (0, 1)
PEERS = ("ducc0", "s2fft", "torch_harmonics")
LIBRARIES = ("keras_sphere", *PEERS)
REPEATS = 5
NTHREADS = 2
DTYPE = "float32"
LARGE_L = 1023  # 2048 x 2048 grid
LARGE_REPEATS = 3
# Free memory the large case waits for (its peak is about 8 GB: float64 tables while
# building, then float32 copies on the host and in JAX).
LARGE_MEMORY_GB = 10.0
MIN_REPEAT_S = 0.05  # each repeat runs the call back to back for at least this long
MIN_REPEATS = 2
CASE_BUDGET_S = 15.0  # bound on the timing loop of one case
CASE_TIMEOUT_S = 600  # a case subprocess is killed after this long
# s2fft's precompute kernels cost O(L^3) memory and build time; above this L it is
# skipped (its L = 256, C = 64 case alone takes about a minute on 2 cores).
S2FFT_MAX_L = 256
SEED = 1234
IMPORT_NAMES = {
    "keras_sphere": "keras_sphere.sphere",
    "ducc0": "ducc0",
    "s2fft": "s2fft",
    "torch_harmonics": "torch_harmonics",
}
DISTRIBUTIONS = ("jax", "jaxlib", "numpy", "ducc0", "s2fft", "torch", "torch-harmonics")


# --------------------------------------------------------------------------------------
# Measurement helpers (run inside case subprocesses).


def best_time(call: Callable[[], object], repeats: int) -> tuple[float, int, int]:
    """Seconds per call: min over repeats of the mean of back-to-back calls.

    `call` must block until its result is ready. Returns (seconds, repeats, number).
    """
    call()  # warm-up
    start = time.perf_counter()
    call()
    first = max(time.perf_counter() - start, 1e-7)
    number = max(1, math.ceil(MIN_REPEAT_S / first))
    repeats = max(MIN_REPEATS, min(repeats, int(CASE_BUDGET_S / (first * number))))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, (time.perf_counter() - start) / number)
    return best, repeats, number


def relative_error(result, reference) -> float:
    """max |result - reference| / max |reference|, in float64."""
    result = np.asarray(result, dtype=np.complex128)
    reference = np.asarray(reference, dtype=np.complex128)
    return float(np.abs(result - reference).max() / np.abs(reference).max())


def random_complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    values = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return values.astype(np.complex64)


def timing_fields(seconds: float, batch: int, repeats: int, number: int) -> Result:
    return {"ms_per_map": 1e3 * seconds / batch, "repeats": repeats, "number": number}


# --------------------------------------------------------------------------------------
# keras_sphere.


def _ours_roundtrip(spin: int) -> Callable:
    import jax

    if spin == 0:
        return jax.jit(lambda plan, x: plan.inverse(plan.forward(x), is_real=True))
    return jax.jit(lambda plan, x: plan.inverse(plan.forward(x)))


def _ours_plan(ell_max: int, spin: int):
    """Build the plan; returns (plan, seconds)."""
    import jax

    from keras_sphere.sphere import Grid
    from keras_sphere.sphere import sht_plan

    start = time.perf_counter()
    plan = sht_plan(Grid.for_bandlimit(ell_max), ell_max, spin)
    jax.block_until_ready(plan.arrays)
    return plan, time.perf_counter() - start


def _ours_fields(plan, batch: int, spin: int):
    """Random band-limited fields synthesised by the plan."""
    import jax

    ell_max = plan.ell_max
    rng = np.random.default_rng(SEED)
    coeffs = random_complex(rng, (batch, ell_max + 1, 2 * ell_max + 1))
    synthesise = jax.jit(lambda plan, a: plan.inverse(a, is_real=spin == 0))
    return synthesise(plan, coeffs).block_until_ready()


def run_keras_sphere(ell_max: int, batch: int, spin: int, repeats: int) -> Result:
    plan, setup_s = _ours_plan(ell_max, spin)
    fields = _ours_fields(plan, batch, spin)
    start = time.perf_counter()
    compiled = _ours_roundtrip(spin).lower(plan, fields).compile()
    compile_s = time.perf_counter() - start
    result = compiled(plan, fields).block_until_ready()
    seconds, used, number = best_time(
        lambda: compiled(plan, fields).block_until_ready(), repeats
    )
    return {
        **timing_fields(seconds, batch, used, number),
        "setup_s": setup_s,
        "compile_s": compile_s,
        "rt_err": relative_error(result, fields),
    }


# --------------------------------------------------------------------------------------
# ducc0.


def _ducc0_alm(rng: np.random.Generator, ell_max: int, spin: int) -> np.ndarray:
    """Random alm in ducc0's (healpy) layout: m-major, m = 0 first; m = 0 real."""
    n_comp = 1 if spin == 0 else 2
    n_alm = (ell_max + 1) * (ell_max + 2) // 2
    alm = random_complex(rng, (n_comp, n_alm))
    alm[:, : ell_max + 1] = alm[:, : ell_max + 1].real
    alm[:, : abs(spin)] = 0.0  # m = 0, ell < |spin|
    for m in range(1, abs(spin)):
        start = m * (2 * ell_max + 1 - m) // 2
        alm[:, start + m : start + abs(spin)] = 0.0
    return alm


def run_ducc0(ell_max: int, batch: int, spin: int, repeats: int) -> Result:
    from ducc0.sht import experimental as sht

    n = 2 * (ell_max + 1)
    common = {"spin": spin, "lmax": ell_max, "geometry": "CC", "nthreads": NTHREADS}
    rng = np.random.default_rng(SEED)
    weights = (sht.get_gridweights("CC", n) / n).astype(np.float32)[:, None]
    maps = [
        sht.synthesis_2d(alm=_ducc0_alm(rng, ell_max, spin), ntheta=n, nphi=n, **common)
        for _ in range(batch)
    ]

    def exact(one):
        alm = sht.analysis_2d(map=one, **common)
        return sht.synthesis_2d(alm=alm, ntheta=n, nphi=n, **common)

    def quadrature(one):
        alm = sht.adjoint_synthesis_2d(map=one * weights, **common)
        return sht.synthesis_2d(alm=alm, ntheta=n, nphi=n, **common)

    seconds, used, number = best_time(lambda: [exact(m) for m in maps], repeats)
    quad_s, _, _ = best_time(lambda: [quadrature(m) for m in maps], repeats)
    return {
        **timing_fields(seconds, batch, used, number),
        "setup_s": None,
        "compile_s": None,
        "rt_err": relative_error([exact(m) for m in maps], maps),
        "ms_per_map_quadrature": 1e3 * quad_s / batch,
        "rt_err_quadrature": relative_error([quadrature(m) for m in maps], maps),
    }


# --------------------------------------------------------------------------------------
# s2fft.


def _s2fft_kernels(bandlimit: int, spin: int):
    """Forward and inverse mwss kernels built in float64, cast to float32."""
    import jax
    import jax.numpy as jnp
    from s2fft.precompute_transforms import construct

    jax.config.update("jax_enable_x64", True)
    try:
        kernels = [
            construct.spin_spherical_kernel_jax(
                bandlimit, spin, reality=spin == 0, sampling="mwss", forward=forward
            ).astype(jnp.float32)
            for forward in (True, False)
        ]
        return jax.block_until_ready(kernels)
    finally:
        jax.config.update("jax_enable_x64", False)


def run_s2fft(ell_max: int, batch: int, spin: int, repeats: int) -> Result:
    if ell_max > S2FFT_MAX_L:
        return {"status": "skipped", "note": f"s2fft capped at L <= {S2FFT_MAX_L}"}
    import jax
    from s2fft.precompute_transforms import spherical

    bandlimit = ell_max + 1  # s2fft's L is exclusive
    real = spin == 0
    start = time.perf_counter()
    forward_kernel, inverse_kernel = _s2fft_kernels(bandlimit, spin)
    setup_s = time.perf_counter() - start
    static = (bandlimit, "mwss", real, spin, None)
    inverse = jax.vmap(
        lambda a, k: spherical.inverse_transform_jax(a, k, *static), (0, None)
    )
    forward = jax.vmap(
        lambda f, k: spherical.forward_transform_jax(f, k, *static), (0, None)
    )
    rng = np.random.default_rng(SEED)
    flm = random_complex(rng, (batch, bandlimit, 2 * bandlimit - 1))
    ell = np.arange(bandlimit)[:, None]
    m = np.arange(-ell_max, ell_max + 1)[None, :]
    flm[:, (np.abs(m) > ell) | (ell < abs(spin))] = 0.0
    fields = jax.jit(inverse)(flm, inverse_kernel).block_until_ready()
    roundtrip = jax.jit(lambda f, kf, ki: inverse(forward(f, kf), ki))
    start = time.perf_counter()
    compiled = roundtrip.lower(fields, forward_kernel, inverse_kernel).compile()
    compile_s = time.perf_counter() - start
    args = (fields, forward_kernel, inverse_kernel)
    result = compiled(*args).block_until_ready()
    seconds, used, number = best_time(
        lambda: compiled(*args).block_until_ready(), repeats
    )
    return {
        **timing_fields(seconds, batch, used, number),
        "setup_s": setup_s,
        "compile_s": compile_s,
        "rt_err": relative_error(result, fields),
        "grid": f"mwss {bandlimit + 1} x {2 * bandlimit}",
    }


# --------------------------------------------------------------------------------------
# torch-harmonics.


def _torch_harmonics_modules(ell_max: int, spin: int):
    import torch_harmonics as th

    n = 2 * (ell_max + 1)
    kinds = (
        (th.RealSHT, th.InverseRealSHT)
        if spin == 0
        else (th.RealVectorSHT, th.InverseRealVectorSHT)
    )
    options = {"lmax": ell_max + 1, "mmax": ell_max + 1, "grid": "equiangular"}
    # Buffers are float64; cast once, or every call casts the whole table.
    return [kind(n, n, **options).float() for kind in kinds]


def run_torch_harmonics(ell_max: int, batch: int, spin: int, repeats: int) -> Result:
    if spin not in (0, 1):
        return {"status": "skipped", "note": "torch-harmonics has spin 0 and 1 only"}
    import torch

    torch.set_num_threads(NTHREADS)
    start = time.perf_counter()
    forward, inverse = _torch_harmonics_modules(ell_max, spin)
    setup_s = time.perf_counter() - start
    rng = np.random.default_rng(SEED)
    components = () if spin == 0 else (2,)
    shape = (batch, *components, ell_max + 1, ell_max + 1)
    coeffs = random_complex(rng, shape) * np.tril(np.ones((ell_max + 1,) * 2))
    if spin:
        coeffs[..., 0, :] = 0.0
    with torch.no_grad():
        fields = inverse(torch.from_numpy(coeffs.astype(np.complex64)))
        result = inverse(forward(fields))
        seconds, used, number = best_time(lambda: inverse(forward(fields)), repeats)
    return {
        **timing_fields(seconds, batch, used, number),
        "setup_s": setup_s,
        "compile_s": None,
        "rt_err": relative_error(result.numpy(), fields.numpy()),
    }


RUNNERS: dict[str, Callable[[int, int, int, int], Result]] = {
    "keras_sphere": run_keras_sphere,
    "ducc0": run_ducc0,
    "s2fft": run_s2fft,
    "torch_harmonics": run_torch_harmonics,
}


# --------------------------------------------------------------------------------------
# The large case: one 2048 x 2048 map, L = 1023, spin 0.


def _cache_files() -> set[str]:
    setting = os.environ.get("KERAS_SPHERE_CACHE", "")
    default = pathlib.Path.home() / ".cache" / "keras_sphere"
    directory = pathlib.Path(setting) if setting else default
    return {p.name for p in directory.glob("sht_tables_*.npz")}


def run_large_keras_sphere(ell_max: int, repeats: int) -> Result:
    import jax

    before = _cache_files()
    plan, setup_s = _ours_plan(ell_max, 0)
    table_source = "built" if _cache_files() - before else "disk cache"
    table_mb = sum(t.nbytes for t in jax.tree_util.tree_leaves(plan.arrays)) / 2**20
    rss_after_setup = peak_rss_mb()
    fields = _ours_fields(plan, 1, 0)
    forward = jax.jit(lambda plan, x: plan.forward(x))
    inverse = jax.jit(lambda plan, a: plan.inverse(a, is_real=True))
    start = time.perf_counter()
    forward_c = forward.lower(plan, fields).compile()
    coeffs = forward_c(plan, fields).block_until_ready()
    inverse_c = inverse.lower(plan, coeffs).compile()
    compile_s = time.perf_counter() - start
    result = inverse_c(plan, coeffs).block_until_ready()
    forward_s, used, _ = best_time(
        lambda: forward_c(plan, fields).block_until_ready(), repeats
    )
    inverse_s, _, _ = best_time(
        lambda: inverse_c(plan, coeffs).block_until_ready(), repeats
    )
    return {
        "ms_per_map": 1e3 * (forward_s + inverse_s),
        "forward_ms": 1e3 * forward_s,
        "inverse_ms": 1e3 * inverse_s,
        "repeats": used,
        "setup_s": setup_s,
        "table_source": table_source,
        "table_mb": table_mb,
        "peak_rss_after_setup_mb": rss_after_setup,
        "compile_s": compile_s,
        "rt_err": relative_error(result, fields),
    }


def run_large_ducc0(ell_max: int, repeats: int) -> Result:
    from ducc0.sht import experimental as sht

    n = 2 * (ell_max + 1)
    common = {"spin": 0, "lmax": ell_max, "geometry": "CC", "nthreads": NTHREADS}
    alm = _ducc0_alm(np.random.default_rng(SEED), ell_max, 0)
    field = sht.synthesis_2d(alm=alm, ntheta=n, nphi=n, **common)
    coeffs = sht.analysis_2d(map=field, **common)
    forward_s, used, _ = best_time(
        lambda: sht.analysis_2d(map=field, **common), repeats
    )
    inverse_s, _, _ = best_time(
        lambda: sht.synthesis_2d(alm=coeffs, ntheta=n, nphi=n, **common), repeats
    )
    result = sht.synthesis_2d(alm=coeffs, ntheta=n, nphi=n, **common)
    return {
        "ms_per_map": 1e3 * (forward_s + inverse_s),
        "forward_ms": 1e3 * forward_s,
        "inverse_ms": 1e3 * inverse_s,
        "repeats": used,
        "setup_s": None,
        "compile_s": None,
        "rt_err": relative_error(result, field),
    }


LARGE_RUNNERS: dict[str, Callable[[int, int], Result]] = {
    "keras_sphere": run_large_keras_sphere,
    "ducc0": run_large_ducc0,
}


# --------------------------------------------------------------------------------------
# Case subprocesses.


def run_case(spec: Result) -> Result:
    """Run one (library, case) in this process; returns its result record."""
    library = spec["library"]
    importlib.import_module(IMPORT_NAMES[library])  # imports count in the baseline
    baseline = peak_rss_mb()
    if spec.get("large"):
        record = LARGE_RUNNERS[library](spec["L"], spec["repeats"])
    else:
        runner = RUNNERS[library]
        record = runner(spec["L"], spec["C"], spec["spin"], spec["repeats"])
    record.setdefault("status", "ok")
    if record["status"] == "ok":
        record["peak_rss_mb"] = peak_rss_mb()
        record["peak_mb"] = record["peak_rss_mb"] - baseline
        record["baseline_rss_mb"] = baseline
    return record


def case_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    report_case(lambda: run_case(spec))


def spawn_case(spec: Result) -> Result:
    """Run one case in a fresh subprocess and parse its result line."""
    env = case_env()
    if not spec.get("large"):
        env["KERAS_SPHERE_CACHE"] = "off"  # setup = table build, not a disk read
    command = [sys.executable, str(pathlib.Path(__file__).resolve())]
    command += ["--case", json.dumps(spec)]
    return {**spec, **run_marked(command, env, CASE_TIMEOUT_S)}


# --------------------------------------------------------------------------------------
# Environment, peers and output.


def probe_peer(library: str) -> str | None:
    """None if `library` imports in a fresh process, else the reason it does not."""
    code = f"import {IMPORT_NAMES[library]}"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines()
    return lines[-1][:300] if lines else f"exit code {done.returncode}"


def environment(args: argparse.Namespace) -> Result:
    settings = {
        "L": args.L,
        "batch": args.batch,
        "spins": args.spins,
        "peers": args.peers,
        "repeats": args.repeats,
        "large": args.large,
        "min_repeat_s": MIN_REPEAT_S,
        "case_budget_s": CASE_BUDGET_S,
        "s2fft_max_L": S2FFT_MAX_L,
        "wait_idle_s": args.wait_idle,
        "retry_busy": args.retry_busy,
    }
    return environment_record(
        settings, DISTRIBUTIONS, dtype=DTYPE, nthreads_peers=NTHREADS
    )


def lookup(results: list[Result], library: str, key: tuple) -> Result | None:
    for record in results:
        case = (record["L"], record.get("C"), record.get("spin"))
        if record["library"] == library and case == key and record["status"] == "ok":
            return record
    return None


def ratio(peer: Result | None, ours: Result | None) -> float | None:
    if peer is None or ours is None:
        return None
    return peer["ms_per_map"] / ours["ms_per_map"]


def main_table(results: list[Result], peers: list[str]) -> str:
    """Ours next to each peer: ms per map, ratio peer / ours (> 1: we are faster)."""
    short = {"ducc0": "ducc0", "s2fft": "s2fft", "torch_harmonics": "th"}
    header = f"{'L':>5} {'C':>3} {'spin':>4} {'ours ms/map':>11}"
    for peer in peers:
        header += f" {short[peer] + ' ms/map':>12} {'ratio':>6}"
    header += f" {'compile s':>9} {'setup s':>7} {'peak MB':>8} {'rt err':>8}"
    lines = [header, "-" * len(header)]
    keys = sorted({(r["L"], r["C"], r["spin"]) for r in results if not r.get("large")})
    for key in keys:
        ours = lookup(results, "keras_sphere", key)
        row = f"{key[0]:>5} {key[1]:>3} {key[2]:>4}"
        row += f" {fmt(ours and ours['ms_per_map'], '11.3f')}"
        for peer in peers:
            other = lookup(results, peer, key)
            row += f" {fmt(other and other['ms_per_map'], '12.3f')}"
            row += f" {fmt(ratio(other, ours), '6.2f')}"
        if ours:
            row += f" {ours['compile_s']:>9.2f} {ours['setup_s']:>7.2f}"
            row += f" {ours['peak_mb']:>8.0f} {ours['rt_err']:>8.1e}"
        lines.append(row)
    return "\n".join(lines)


def detail_table(results: list[Result]) -> str:
    """Every library's own numbers, and why a case did not run."""
    header = (
        f"{'library':<16} {'L':>5} {'C':>3} {'spin':>4} {'ms/map':>10} {'compile s':>9}"
        f" {'setup s':>7} {'peak MB':>8} {'rt err':>8}  note"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        if r.get("large"):
            continue
        row = f"{r['library']:<16} {r['L']:>5} {r['C']:>3} {r['spin']:>4}"
        if r["status"] != "ok":
            lines.append(f"{row} {r['status']}: {r.get('note', '')}")
            continue
        row += f" {r['ms_per_map']:>10.3f} {fmt(r['compile_s'], '9.2f')}"
        row += f" {fmt(r['setup_s'], '7.2f')} {r['peak_mb']:>8.0f} {r['rt_err']:>8.1e}"
        if "ms_per_map_quadrature" in r:
            row += (
                f"  quadrature pair {r['ms_per_map_quadrature']:.3f} ms/map, "
                f"rt err {r['rt_err_quadrature']:.1e}"
            )
        if "grid" in r:
            row += f"  grid {r['grid']}"
        lines.append(row)
    return "\n".join(lines)


def large_table(results: list[Result]) -> str:
    header = (
        f"{'library':<14} {'fwd ms':>9} {'inv ms':>9} {'setup s':>8} {'tables':>11}"
        f" {'compile s':>9} {'peak RSS MB':>11} {'rt err':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        if not r.get("large"):
            continue
        if r["status"] != "ok":
            lines.append(f"{r['library']:<14} {r['status']}: {r.get('note', '')}")
            continue
        tables = r.get("table_source", "-")
        lines.append(
            f"{r['library']:<14} {r['forward_ms']:>9.1f} {r['inverse_ms']:>9.1f}"
            f" {fmt(r['setup_s'], '8.1f')} {tables:>11} {fmt(r['compile_s'], '9.2f')}"
            f" {r['peak_rss_mb']:>11.0f} {r['rt_err']:>8.1e}"
        )
    return "\n".join(lines)


def available_peers(requested: list[str]) -> tuple[list[str], dict[str, str]]:
    usable, notes = [], {}
    for peer in requested:
        reason = probe_peer(peer)
        if reason is None:
            usable.append(peer)
        else:
            notes[peer] = f"not installed or not importable ({reason}); skipped"
            print(f"note: {peer} {notes[peer]}", flush=True)
    return usable, notes


def case_specs(args: argparse.Namespace, peers: list[str]) -> list[Result]:
    specs = []
    for ell_max in args.L:
        for batch in args.batch:
            for spin in args.spins:
                for library in ("keras_sphere", *peers):
                    specs.append(
                        {
                            "library": library,
                            "L": ell_max,
                            "C": batch,
                            "spin": spin,
                            "repeats": args.repeats,
                        }
                    )
    if args.large:
        for library in ("keras_sphere", *peers):
            if library in LARGE_RUNNERS:
                specs.append(
                    {
                        "library": library,
                        "L": LARGE_L,
                        "C": 1,
                        "spin": 0,
                        "repeats": LARGE_REPEATS,
                        "large": True,
                    }
                )
    return specs


def measure_case(spec: Result, wait_idle_s: float, retries: int) -> Result:
    """Run a case; retry it up to `retries` times while other processes load the CPU.

    Keeps the attempt during which other processes used the least CPU.
    """
    if spec.get("large") and not wait_for_memory(LARGE_MEMORY_GB, wait_idle_s):
        note = f"less than {LARGE_MEMORY_GB} GB of memory available"
        return {**spec, "status": "skipped", "note": note}
    best: Result | None = None
    for attempt in range(1 + retries):
        busy, waited = wait_for_idle(wait_idle_s)
        before = cpu_sample()
        record = spawn_case(spec)
        record.update(busy_before=busy, waited_s=waited, attempts=attempt + 1)
        record["others_busy"] = others_busy(before, cpu_sample())
        load = record["others_busy"] or 0.0
        if best is None or load < (best["others_busy"] or 0.0):
            best = record
        if load <= IDLE_BUSY_MAX or record["status"] != "ok":
            break
    best["attempts"] = record["attempts"]
    return best


def case_key(record: Result) -> tuple:
    keys = ("library", "L", "C", "spin", "large")
    return tuple(record.get(key) for key in keys)


def merge_results(old: list[Result], new: list[Result]) -> list[Result]:
    """`old` with the cases measured again replaced by their `new` records."""
    fresh = {case_key(r): r for r in new}
    merged = [fresh.pop(case_key(r), r) for r in old]
    return merged + list(fresh.values())


def progress(record: Result, elapsed: float) -> None:
    case = f"{record['library']:<16} L={record['L']:<5} C={record['C']:<3}"
    case += f" spin={record['spin']}"
    busy = record.get("others_busy")
    case += "" if busy is None else f" (others {busy:.0%})"
    if record["status"] == "ok":
        status = f"{record['ms_per_map']:.3f} ms/map, err {record['rt_err']:.1e}"
    else:
        status = f"{record['status']}: {record.get('note', '')}"
    print(f"  {case}  {status}  [{elapsed:.0f} s]", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--L", type=int, nargs="*", default=list(L_VALUES))
    parser.add_argument("--batch", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--spins", type=int, nargs="+", default=list(SPINS))
    parser.add_argument(
        "--peers", nargs="*", default=list(PEERS), choices=list(PEERS), metavar="PEER"
    )
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--json", type=pathlib.Path, help="write all results here")
    parser.add_argument(
        "--large",
        action="store_true",
        help=f"also run one {2 * (LARGE_L + 1)}^2 map (L = {LARGE_L}), spin 0, C = 1",
    )
    add_load_arguments(
        parser, "run a case again (up to N times) if other processes loaded the CPU"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="update the --json file: replace the cases run now, keep the others",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.case:
        case_main(args.case)
        return
    info = environment(args)
    print_environment(info, DTYPE)
    peers, skipped = available_peers(args.peers)
    started = time.perf_counter()
    results = []
    for spec in case_specs(args, peers):
        record = measure_case(spec, args.wait_idle, args.retry_busy)
        results.append(record)
        progress(record, time.perf_counter() - started)
    info["load_average_end"] = os.getloadavg()
    info["total_s"] = time.perf_counter() - started
    info["skipped_peers"] = skipped
    if args.merge and args.json and args.json.exists():
        previous = json.loads(args.json.read_text())
        results = merge_results(previous["results"], results)
        previous["environment"].setdefault("reruns", []).append(info)
        info = previous["environment"]
    print()
    print("forward + inverse per map (ratio = peer / ours; > 1: keras_sphere faster)")
    print(main_table(results, peers))
    print()
    print("per library")
    print(detail_table(results))
    if any(r.get("large") for r in results):
        print()
        print(f"large: one {2 * (LARGE_L + 1)}^2 map, L = {LARGE_L}, spin 0, C = 1")
        print(large_table(results))
    for peer, note in skipped.items():
        print(f"note: {peer} {note}")
    busy_cases = [r for r in results if (r.get("others_busy") or 0.0) > IDLE_BUSY_MAX]
    if busy_cases:
        print(
            f"warning: during {len(busy_cases)} of {len(results)} cases, other "
            f"processes used over {IDLE_BUSY_MAX:.0%} of the CPU; their timings are "
            "pessimistic (others_busy in the JSON)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"environment": info, "results": results}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
