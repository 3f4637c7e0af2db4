"""Cold start: wall time of whole ``archsim`` processes, beside the interpreter's own start.

Target (issue 14 item 8): a cold ``archsim run kimi_k2 --hw h100 --format json`` process at most 0.3 s (median of
10), printed beside ``python3 -c pass``. Each row is the median (and minimum) wall time of N fresh processes started
one after another, with the CPU time (user + system) the process used: on a shared machine the wall time swings
with other load, the CPU time much less. CPU above wall is numpy's OpenBLAS helper threads spinning on another core
after import (~0.1 s of CPU on a 2-core machine; OPENBLAS_NUM_THREADS=1 removes it and leaves an idle machine's wall
time unchanged). The interpreter rows say how much of the budget is spent before archsim's
first line runs (``-S``: no site-packages, so no .pth files; ``-I -S``: also no environment or user site).
Bytecode: where PYTHONDONTWRITEBYTECODE is set and archsim is an editable checkout, no .pyc is ever written and
every process compiles archsim's ~60 modules again; an installed wheel has its .pyc (pip compiles at install).
The rows marked "with .pyc" run with a bytecode cache in a temporary folder (PYTHONPYCACHEPREFIX) to show both.
Then, in this process, ``estimate()`` from YAML paths and shipped names beside loaded objects (target: 1.5x).
With ``--imports`` it also prints the slowest imports of one ``run`` process (``python3 -X importtime``).

With ``--script PATH`` it also times another console script, e.g. the wheel installed in a fresh virtual
environment: ``python -m pip wheel --no-deps -w WHEELDIR . && python -m venv VENV && VENV/bin/pip install
WHEELDIR/archsim-*.whl``, then ``--script VENV/bin/archsim`` (no editable-install finder, .pyc from pip).

Run: python benchmarks/bench_cold_start.py [--repeats 10] [--imports] [--script PATH]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 0.3  # issue 14: "a whole archsim run ... --format json process at most 0.3 s"
RUN = ("run", "kimi_k2", "--hw", "h100", "--format", "json")
# the breakdown rows: the libraries every projection needs, then everything a run process imports, without running
THIRD_PARTY = "import numpy, yaml, argparse, dataclasses, json"
RUN_IMPORTS = "import archsim.cli, archsim.cli.run, archsim.api"


def _script_rows(script: str) -> list[tuple[str, list[str], dict[str, str] | None]]:
    """Rows for another ``archsim`` console script, e.g. one installed from the wheel in a fresh virtual environment
    (``--script VENV/bin/archsim``), beside its own interpreter's ``-c pass``."""
    python = os.path.join(os.path.dirname(script), "python")
    return [(f"{python} -c pass", [python, "-c", "pass"], None),
            (f"{script} --version", [script, "--version"], None),
            (f"{script} {' '.join(RUN)}", [script, *RUN], None)]


def _commands(pyc_env: dict[str, str]) -> list[tuple[str, list[str], dict[str, str] | None]]:
    """(label, argv, environment or None for this one) of each row; the ``archsim`` script on PATH is timed too
    when it is not the one beside this interpreter (a pyenv shim is a bash script that execs pyenv)."""
    py = sys.executable
    script = os.path.join(os.path.dirname(py), "archsim")
    run = [script, *RUN] if os.path.exists(script) else [py, "-m", "archsim", *RUN]
    rows = [("python3 -I -S -c pass (bare interpreter)", [py, "-I", "-S", "-c", "pass"], None),
            ("python3 -S -c pass (no site-packages, no .pth)", [py, "-S", "-c", "pass"], None),
            ("python3 -c pass", [py, "-c", "pass"], None),
            ("python3 -c 'import archsim'", [py, "-c", "import archsim"], None),
            ("python3 -c 'import numpy, yaml, argparse, dataclasses, json'", [py, "-c", THIRD_PARTY], None),
            ("python3 -c 'import <every module run imports>'", [py, "-c", RUN_IMPORTS], None),
            ("archsim --version", [*run[:-len(RUN)], "--version"], None),
            ("archsim " + " ".join(RUN), run, None),
            ("python3 -c 'import <every module run imports>' (with .pyc)", [py, "-c", RUN_IMPORTS], pyc_env),
            ("archsim --version (with .pyc)", [*run[:-len(RUN)], "--version"], pyc_env),
            ("archsim " + " ".join(RUN) + " (with .pyc)", run, pyc_env)]
    on_path = shutil.which("archsim")
    if on_path and os.path.realpath(on_path) != os.path.realpath(script):
        rows.append((f"{on_path} {' '.join(RUN)}", [on_path, *RUN], None))
    return rows


def _cold(argv: list[str], repeats: int, env: dict[str, str] | None = None) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of ``repeats`` fresh processes; a failing command stops the benchmark."""
    wall, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False, env=env)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return wall, cpu


def _imports(top: int = 15) -> None:
    """The ``top`` imports of one ``run`` process with the largest cumulative time (``-X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "archsim", *RUN], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), int(parts[0].split(":")[1]), parts[2].rstrip()))
    print(f"\nslowest imports of one run process (cumulative / self, ms; -X importtime inflates them):")
    for cumulative, self_us, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cumulative / 1e3:7.1f} {self_us / 1e3:7.1f}  {name}")


def _paths_vs_objects(repeats: int) -> None:
    """Issue 14: ``estimate()`` from YAML paths within 1.5x of the same call on loaded objects (median CPU time of
    ``repeats`` warm calls each; the parse cache of config/yaml_io.py makes a repeated path cost little)."""
    from archsim.api import estimate
    from archsim.config.hardware import load_hardware
    from archsim.config.workload import load_workload
    from archsim.paths import data_dir

    wl_path, hw_path = str(data_dir("workloads") / "kimi_k2.yaml"), str(data_dir("hardware") / "h100.yaml")
    wl, hw = load_workload(wl_path), load_hardware(hw_path)
    cases = (("loaded objects", lambda: estimate(wl, hw)), ("YAML paths", lambda: estimate(wl_path, hw_path)),
             ("shipped names", lambda: estimate("kimi_k2", "h100")))
    medians = {}
    for label, call in cases:
        call()  # warm: imports, tile-menu and parse caches
        cpu = []
        for _ in range(repeats):
            start = time.process_time()
            call()
            cpu.append(time.process_time() - start)
        medians[label] = statistics.median(cpu)
    base = medians["loaded objects"]
    print("\nestimate(kimi_k2, h100) in one process (median CPU of warm calls; target: paths within 1.5x):")
    for label, value in medians.items():
        print(f"  from {label:15s} {value * 1e3:6.1f} ms  ({value / base:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--imports", action="store_true", help="also list the slowest imports of one run process")
    ap.add_argument("--script", action="append", default=[],
                    help="also time this archsim console script (e.g. installed from the wheel in a fresh venv)")
    args = ap.parse_args()
    print(f"{args.repeats} cold processes each, {sys.executable} (Python {sys.version.split()[0]}), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}")
    print(f"{'command':70s} {'wall median':>11s} {'wall min':>9s} {'cpu median':>11s}")
    with tempfile.TemporaryDirectory() as cache:
        pyc_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        pyc_env["PYTHONPYCACHEPREFIX"] = cache
        for label, argv, env in _commands(pyc_env) + [row for script in args.script for row in _script_rows(script)]:
            _cold(argv, 1, env)  # warm the page cache (and, with .pyc, write the bytecode cache)
            wall, cpu = _cold(argv, args.repeats, env)
            flag = ""
            if argv[-len(RUN):] == list(RUN):
                flag = "  ok" if statistics.median(wall) <= TARGET_S else f"  over the {TARGET_S:g} s target"
            print(f"{label[:70]:70s} {statistics.median(wall):10.3f}s {min(wall):8.3f}s "
                  f"{statistics.median(cpu):10.3f}s{flag}")
    _paths_vs_objects(args.repeats)
    if args.imports:
        _imports()


if __name__ == "__main__":
    main()
