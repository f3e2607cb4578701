"""Preset benchmark: time and peak memory of loading a zoo preset and predicting.

Each case runs in its own fresh Python process and reports, from inside it:

* ``import_s``: ``import keras_sphere``;
* ``load_s`` / ``load_cpu_s``: wall and CPU time of ``zoo.load(name)`` (or
  ``zoo.load_backbone``), which imports keras-hub and TensorFlow, builds the model and
  reads its weights; ``load_rss_mb``: peak resident set size after it;
* for "predict": ``first_predict_s`` (the first ``model.predict``: transform tables
  made or read from the disk cache, the step compiled, the maps classified),
  ``predict_s`` (a second call on the same maps) and ``peak_rss_mb``, the peak of the
  whole process. For a weather preset (``--preset weather_256``), "predict" is
  ``weather.forecast(model, state, "5D")`` (20 steps of 6 h) from the held-out
  state the preset ships, first call and second call.

Maps are seeded white noise of the preset's grid scaled to 100 uK (the cost does not
depend on their content; the simulator's own transform tables stay out of the
figure). CPU times count both cores: on a busy machine wall times stretch, CPU times
much less (``load_average_start`` in the JSON records how busy it was).

Usage::

    PYTHONPATH=. python benchmarks/presets.py        # load, load_backbone, predict
    PYTHONPATH=. python benchmarks/presets.py --maps 1 2 --json out.json
    PYTHONPATH=. python benchmarks/presets.py --preset weather_256 --cases predict
    PYTHONPATH=. python benchmarks/presets.py --cold      # tables built, no disk cache
    # the same cases against another copy of the package (e.g. an older revision):
    PYTHONPATH=. python benchmarks/presets.py --keras-sphere /tmp/old_checkout
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

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

PRESET = "cmb_1024"
CASES = ("load", "backbone", "predict")
MAPS = (1,)
CASE_TIMEOUT_S = 1800
PACKAGES = ("keras", "keras-hub", "jax", "jaxlib", "numpy", "tensorflow")


def run_case(case: str, preset: str, n_maps: int) -> Result:
    start, cpu_start = time.perf_counter(), time.process_time()
    import numpy as np

    import keras_sphere
    from keras_sphere import weather
    from keras_sphere.models import WeatherForecaster

    imported, cpu_imported = time.perf_counter(), time.process_time()
    load = (
        keras_sphere.zoo.load_backbone if case == "backbone" else keras_sphere.zoo.load
    )
    model = load(preset)
    loaded, cpu_loaded = time.perf_counter(), time.process_time()
    record = {
        "status": "ok",
        "keras_sphere_file": keras_sphere.__file__,
        "import_s": imported - start,
        "load_s": loaded - imported,
        "load_cpu_s": cpu_loaded - cpu_imported,
        "load_rss_mb": peak_rss_mb(),
    }
    if case == "predict" and isinstance(model, WeatherForecaster):
        # The weather presets' job: `weather.forecast` 5 days (20 steps) from the
        # state the preset ships, xarray in and out.
        state = keras_sphere.zoo.load_sample(preset).isel(time=[0])
        first = time.perf_counter()
        weather.forecast(model, state, "5D")
        second = time.perf_counter()
        weather.forecast(model, state, "5D")
        record.update(
            maps=1,
            first_predict_s=second - first,
            predict_s=time.perf_counter() - second,
        )
    elif case == "predict":
        n = model.input_shape[1]
        maps = 100.0 * np.random.default_rng(0).standard_normal((n_maps, n, n))
        maps = maps.astype("float32")
        first = time.perf_counter()
        model.predict(maps, batch_size=n_maps, verbose=0)
        second = time.perf_counter()
        model.predict(maps, batch_size=n_maps, verbose=0)
        record.update(
            maps=n_maps,
            first_predict_s=second - first,
            predict_s=time.perf_counter() - second,
        )
    record["cpu_s"] = time.process_time() - cpu_start  # the whole case, import included
    record["peak_rss_mb"] = peak_rss_mb()
    return record


def spawn_case(spec: Result, args: argparse.Namespace) -> Result:
    env = case_env()
    if args.keras_sphere is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(args.keras_sphere), env["PYTHONPATH"]])
    if args.cold:
        env["KERAS_SPHERE_CACHE"] = "off"  # tables built, never read from disk
    command = [sys.executable, str(pathlib.Path(__file__).resolve())]
    command += ["--case", json.dumps(spec)]
    before = cpu_sample()
    record = run_marked(command, env, CASE_TIMEOUT_S)
    record["others_busy"] = others_busy(before, cpu_sample())
    return {**spec, **record}


def table(results: list[Result]) -> str:
    lines = [
        "| case | maps | import s | load s (CPU s) | load peak GB | first predict s "
        "| predict s | peak RSS GB | others busy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.get("status") != "ok":
            note = r.get("note", "")[:80]
            lines.append(f"| {r['case']} | | {r.get('status')}: {note} ||||||")
            continue
        lines.append(
            f"| {r['case']} | {r.get('maps') or ''} | {fmt(r['import_s'], '.1f')} | "
            f"{fmt(r['load_s'], '.1f')} ({fmt(r['load_cpu_s'], '.1f')}) | "
            f"{fmt(r['load_rss_mb'] / 1024, '.2f')} | "
            f"{fmt(r.get('first_predict_s'), '.1f')} | "
            f"{fmt(r.get('predict_s'), '.1f')} | "
            f"{fmt(r['peak_rss_mb'] / 1024, '.2f')} | "
            f"{fmt(r.get('others_busy'), '.2f')} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default=PRESET)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument(
        "--maps", type=int, nargs="+", default=list(MAPS), help="maps per predict"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="KERAS_SPHERE_CACHE=off: tables are built, not read from the disk cache",
    )
    parser.add_argument(
        "--keras-sphere",
        type=pathlib.Path,
        help="directory holding the keras_sphere package to measure (default: this "
        "repository)",
    )
    parser.add_argument("--json", type=pathlib.Path, help="write results here")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.case:
        spec = json.loads(args.case)
        report_case(lambda: run_case(spec["case"], spec["preset"], spec["maps"]))
        return
    settings = {
        "preset": args.preset,
        "cases": args.cases,
        "maps": args.maps,
        "cold": args.cold,
        "keras_sphere": None if args.keras_sphere is None else str(args.keras_sphere),
    }
    info = environment_record(settings, PACKAGES, dtype="float32")
    print_environment(info, "float32")
    specs = []
    for case in args.cases:
        for n_maps in args.maps if case == "predict" else [None]:
            specs.append({"case": case, "preset": args.preset, "maps": n_maps})
    results = []
    for spec in specs:
        print(f"running {spec} ...", flush=True)
        results.append(spawn_case(spec, args))
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"environment": info, "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
