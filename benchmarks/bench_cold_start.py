"""Cold start: wall time of whole ``archsim`` processes, beside the interpreter's own start.

Target (issue 14 item 8): a cold ``archsim run kimi_k2 --hw h100 --format json`` process at most 0.3 s (median of
10), printed beside ``python3 -c pass``. Each row is the median (and minimum) wall time of N fresh processes started
one after another; the interpreter rows say how much of the budget is spent before archsim's first line runs
(``-S``: no site-packages, so no .pth files; ``-I -S``: also no environment or user site).
With ``--imports`` it also prints the slowest imports of one ``run`` process (``python3 -X importtime``).

Run: python benchmarks/bench_cold_start.py [--repeats 10] [--imports]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

TARGET_S = 0.3  # issue 14: "a whole archsim run ... --format json process at most 0.3 s"
RUN = ("run", "kimi_k2", "--hw", "h100", "--format", "json")


def _commands() -> list[tuple[str, list[str]]]:
    """(label, argv) of each row; the ``archsim`` script on PATH is timed too when there is one (a pyenv shim
    on PATH is a bash script that execs pyenv: its cost is printed as its own row)."""
    py = sys.executable
    rows = [("python3 -I -S -c pass (bare interpreter)", [py, "-I", "-S", "-c", "pass"]),
            ("python3 -S -c pass (no site-packages)", [py, "-S", "-c", "pass"]),
            ("python3 -c pass", [py, "-c", "pass"]),
            ("python3 -c 'import archsim'", [py, "-c", "import archsim"]),
            ("python3 -m archsim --version", [py, "-m", "archsim", "--version"]),
            ("python3 -m archsim " + " ".join(RUN), [py, "-m", "archsim", *RUN])]
    script = os.path.join(os.path.dirname(py), "archsim")
    if os.path.exists(script):  # the console script next to this interpreter (what an installed user runs)
        rows += [("archsim --version", [script, "--version"]), ("archsim " + " ".join(RUN), [script, *RUN])]
    on_path = shutil.which("archsim")
    if on_path and os.path.realpath(on_path) != os.path.realpath(script):
        rows.append((f"{on_path} {' '.join(RUN)} (PATH)", [on_path, *RUN]))
    return rows


def _cold(argv: list[str], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` fresh processes; a failing command stops the benchmark with its stderr."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return times


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--imports", action="store_true", help="also list the slowest imports of one run process")
    args = ap.parse_args()
    print(f"{args.repeats} cold processes each, {sys.executable} (Python {sys.version.split()[0]}), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"{'command':64s} {'median':>8s} {'min':>8s}")
    for label, argv in _commands():
        _cold(argv, 1)  # warm the page cache and the .pyc files
        times = _cold(argv, args.repeats)
        flag = ""
        if argv[-len(RUN):] == list(RUN):
            flag = "  ok" if statistics.median(times) <= TARGET_S else f"  over the {TARGET_S:g} s target"
        print(f"{label[:64]:64s} {statistics.median(times):7.3f}s {min(times):7.3f}s{flag}")
    if args.imports:
        _imports()


if __name__ == "__main__":
    main()
