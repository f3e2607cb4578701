"""Measurement and environment helpers shared by the benchmark scripts.

The scripts run as ``python benchmarks/<script>.py``, which puts ``benchmarks/`` on
``sys.path``, so they import this module as ``from _runner import ...``. It imports
only the standard library: ``train_step.py`` is also imported by a timing script that
runs in another Python (the reference's, with NumPy and JAX but not keras_sphere).

* memory: ``peak_rss_mb`` (peak resident set size), ``available_gb`` and
  ``wait_for_memory``;
* machine load: ``cpu_sample`` and ``others_busy`` (the share of the CPU that other
  processes used between two samples), ``cpu_busy`` and ``wait_for_idle``;
* environment: ``versions``, ``cpu_model``, ``git_revision`` and
  ``environment_record``, the common part of every JSON file's ``environment``;
* case subprocesses: each case prints one line ``RESULT_MARK + json`` (``report_case``)
  that the parent reads back (``run_marked``);
* options and output: ``add_load_arguments`` (``--wait-idle``, ``--retry-busy``),
  ``print_environment`` and ``fmt``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

# Before each case the machine is sampled for IDLE_PROBE_S; wait_for_idle waits (up to
# its limit) until other processes use less than IDLE_BUSY_MAX of it.
IDLE_PROBE_S = 1.0
IDLE_BUSY_MAX = 0.15
RESULT_MARK = "@@RESULT@@ "
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

Result = dict[str, Any]
CpuSample = tuple[float, float, float]


# --------------------------------------------------------------------------------------
# Memory.


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def available_gb() -> float | None:
    """Memory available to new processes (``MemAvailable``), GiB, or None."""
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError):
        pass
    return None


def wait_for_memory(need_gb: float, limit_s: float) -> bool:
    """Wait up to `limit_s` until `need_gb` of memory is available.

    Returns whether it is (also True where the available memory cannot be read).
    """
    start = time.perf_counter()
    while (available_gb() or math.inf) < need_gb:
        if time.perf_counter() - start >= limit_s:
            return False
        time.sleep(IDLE_PROBE_S)
    return True


# --------------------------------------------------------------------------------------
# Machine load.


def cpu_sample(own: bool = False) -> CpuSample | None:
    """(all cores' time, their busy time, our CPU time), seconds, or None.

    Args:
        own: count this process's own CPU time as ours; by default ours is the CPU
            time of this process's finished children (the case subprocesses).

    Returns:
        None where ``/proc/stat`` cannot be read.
    """
    try:
        fields = [int(v) for v in pathlib.Path("/proc/stat").read_text().split()[1:9]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(fields) / tick
    busy = total - (fields[3] + fields[4]) / tick  # minus idle and iowait
    usage = resource.getrusage(
        resource.RUSAGE_SELF if own else resource.RUSAGE_CHILDREN
    )
    return total, busy, usage.ru_utime + usage.ru_stime


def others_busy(before: CpuSample | None, after: CpuSample | None) -> float | None:
    """Fraction of the machine used by processes other than ours in between.

    `before` and `after` are two ``cpu_sample`` results taken the same way; None if
    either is None.
    """
    if before is None or after is None:
        return None
    total, busy, ours = (b - a for a, b in zip(before, after, strict=True))
    return max(0.0, (busy - ours) / max(total, 1e-9))


def cpu_busy(interval: float = IDLE_PROBE_S) -> float | None:
    """Fraction of the machine other processes used over `interval` seconds, or None."""
    before = cpu_sample()
    time.sleep(interval)
    return others_busy(before, cpu_sample())


def wait_for_idle(limit_s: float) -> tuple[float | None, float]:
    """Wait up to `limit_s` for an idle machine; returns (busy fraction, waited s).

    The machine is sampled for ``IDLE_PROBE_S`` at least once, and again while other
    processes use more than ``IDLE_BUSY_MAX`` of it and `limit_s` has not passed.
    """
    start = time.perf_counter()
    busy = cpu_busy()
    while busy is not None and busy > IDLE_BUSY_MAX:
        if time.perf_counter() - start >= limit_s:
            break
        busy = cpu_busy()
    return busy, time.perf_counter() - start


# --------------------------------------------------------------------------------------
# Environment.


def versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Python's version, then each installed distribution's (None if absent)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str:
    """Output of ``git <args>`` run in the repository; raises if git fails."""
    done = subprocess.run(
        ["git", *args], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    return done.stdout.strip()


def git_revision() -> str | None:
    """keras_sphere's short git revision, ``+dirty`` if tracked files changed."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


# Settings read at process start that change CPU speed: the allocator's tunables
# (``glibc.malloc.hugetlb=1`` backs large buffers with huge pages), XLA's flags, thread
# counts.
RECORDED_VARIABLES = ("GLIBC_TUNABLES", "XLA_FLAGS", "OMP_NUM_THREADS", "LD_PRELOAD")


def environment_record(
    settings: Result, packages: Iterable[str], **fields: Any
) -> Result:
    """The machine, versions and settings of a run, for a JSON file's environment.

    Args:
        settings: the run's options and constants, stored under ``settings``.
        packages: distributions whose versions to record (see ``versions``).
        **fields: further entries (a script's ``dtype``, ``device``, ...), placed
            between ``load_average_start`` and ``settings``.

    Returns:
        ``date`` (UTC, ISO 8601), ``cpu``, ``cores``, ``platform``, ``versions``,
        ``keras_sphere_revision``, ``load_average_start`` (1, 5 and 15 minutes),
        ``environment_variables`` (those of `RECORDED_VARIABLES` that are set: they
        change speed), the `fields`, then ``settings``.
    """
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat("T", "seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions(packages),
        "keras_sphere_revision": git_revision(),
        "load_average_start": os.getloadavg(),
        "environment_variables": {
            name: os.environ[name] for name in RECORDED_VARIABLES if name in os.environ
        },
        **fields,
        "settings": settings,
    }


# --------------------------------------------------------------------------------------
# Case subprocesses.


def case_env() -> dict[str, str]:
    """This process's environment, with the repository on PYTHONPATH, Keras on JAX."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("KERAS_BACKEND", "jax")
    return env


def report_case(run: Callable[[], Result]) -> None:
    """Print ``run()``'s record (or the error it raised) as the result line."""
    try:
        record = run()
    except Exception as error:  # report every failure as a result, not a crash
        record = {"status": "error", "note": f"{type(error).__name__}: {error}"[:500]}
    print(RESULT_MARK + json.dumps(record), flush=True)


def run_marked(
    command: list[str],
    env: dict[str, str],
    timeout_s: float,
    cwd: str | os.PathLike | None = None,
) -> Result:
    """Run `command` and return the record on its last result line.

    Returns ``{"status": "error", "note": ...}`` if it ran past `timeout_s` or
    printed no result line (the note then holds the end of its output).
    """
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "note": f"timeout after {timeout_s} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    note = f"exit code {done.returncode}: " + " | ".join(tail)
    return {"status": "error", "note": note[:500]}


# --------------------------------------------------------------------------------------
# Options and output.


def add_load_arguments(parser: argparse.ArgumentParser, retry_help: str) -> None:
    """Add ``--wait-idle SECONDS`` and ``--retry-busy N`` (help `retry_help`)."""
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each case, wait up to this long for other processes to go quiet",
    )
    parser.add_argument(
        "--retry-busy", type=int, default=0, metavar="N", help=retry_help
    )


def print_environment(info: Result, dtype: str) -> None:
    """Print the CPU, cores, `dtype` and versions of an ``environment_record``."""
    print(f"{info['cpu']}, {info['cores']} cores; dtype {dtype}; versions:")
    print("  " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))


def fmt(value: float | None, spec: str) -> str:
    """`value` formatted with `spec`, or a dash as wide as the spec asks for."""
    if value is None:
        return "-".rjust(int(spec.split(".")[0] or 0))
    return format(value, spec)
