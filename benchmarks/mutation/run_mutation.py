#!/usr/bin/env python3
"""Mutation testing of archsim/mapping/ (a dev tool, not part of the CI run).

Each mutant is one small AST edit of one source file (operators below). The script never edits the checkout: it
copies the tree to a scratch folder per worker, writes the mutant there, runs the tests that cover the mutated line
(found once with coverage.py, one context per test), and writes the original back before the next mutant. A mutant is
*killed* when a test fails (or the run times out or crashes), *survived* when every selected test passes, and
*uncovered* when no selected test runs its line (a survivor too). Survivors are matched against
``equivalent.txt`` (mutants that cannot change behaviour, one reason each) and reported.

Operators: arithmetic swaps (+ -, * /, // -> *, % -> //, ** -> *), dropped terms (a op b -> a; a + b, a * b -> b),
comparison swaps (< <=, > >=, == !=, in / not in, is / is not), constant tweaks (int n -> n + 1, float x -> 1.5 x,
True <-> False), unary drops (-x -> x, not x -> x), and <-> or, max <-> min, ceil(x) -> x, augmented assignment
swaps (+= -=, *= /=). Not mutated: docstrings and strings, annotations, decorators, f-strings, ``raise`` statements
(error messages), dataclass field options.

Usage (from the repository root; about 1.5 s a mutant a worker on this machine):

    python3 benchmarks/mutation/run_mutation.py                      # sample 400 mutants, 2 workers
    python3 benchmarks/mutation/run_mutation.py --max-mutants 0      # every mutant (a few thousand: ~1 hour)
    python3 benchmarks/mutation/run_mutation.py --exclude-tests by_hand   # without the *_by_hand test files
    python3 benchmarks/mutation/run_mutation.py --list               # list the mutants, run nothing

Writes ``--report`` (markdown, default benchmarks/mutation/report.md) and a JSON file beside it; prints the kill
rate. Needs ``coverage`` (``python3 -m pip install coverage``); without it every mutant runs the whole selection.
"""
from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEFAULT_TESTS = ("tests/mapping", "tests/test_energy_per_device.py", "tests/test_same_numbers.py")
DEFAULT_PATHS = ("archsim/mapping",)
COPY_ITEMS = ("archsim", "tests", "workloads", "hardware", "deployments", "validation", "examples", "docs",
              "benchmarks", "pyproject.toml", "README.md")
SKIP_KEYWORDS = {"compare", "repr", "kw_only", "frozen", "maxsize", "default_factory", "hash", "init"}


# --- mutants --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    path: str          # relative to the repository root
    line: int
    col: int
    end_line: int
    operator: str
    original: str
    replacement: str

    @property
    def key(self) -> str:
        """Stable id: file, line, operator and the replaced text (``equivalent.txt`` names mutants by it)."""
        return f"{self.path}:{self.line}:{self.operator}:{self.original} -> {self.replacement}"


BIN_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
            ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult}
CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
AUG_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}


def _excluded_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, annotations, decorators, f-strings, raise statements, dataclass
    field options, and everything under them."""
    out: set[int] = set()

    def mark(node):
        for sub in ast.walk(node):
            out.add(id(sub))

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for d in node.decorator_list:
                mark(d)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
                mark(node.returns)
        if isinstance(node, ast.arg) and node.annotation is not None:
            mark(node.annotation)
        if isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, (ast.JoinedStr, ast.Raise)):
            mark(node)
        if isinstance(node, ast.keyword) and node.arg in SKIP_KEYWORDS:
            mark(node)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            mark(node)
    return out


def _variants(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """(operator name, mutated copy) of one node."""
    out = []
    if isinstance(node, ast.BinOp):
        swap = BIN_SWAP.get(type(node.op))
        if swap:
            m = copy.deepcopy(node)
            m.op = swap()
            out.append(("binop_swap", m))
        if isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            out.append(("drop_right", copy.deepcopy(node.left)))
            if isinstance(node.op, (ast.Add, ast.Mult)):
                out.append(("drop_left", copy.deepcopy(node.right)))
    elif isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            swap = CMP_SWAP.get(type(op))
            if swap:
                m = copy.deepcopy(node)
                m.ops[i] = swap()
                out.append(("compare_swap", m))
    elif isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            out.append(("constant", ast.Constant(value=not v)))
        elif isinstance(v, int):
            out.append(("constant", ast.Constant(value=v + 1)))
        elif isinstance(v, float):
            out.append(("constant", ast.Constant(value=v * 1.5 if v else 1.0)))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        out.append(("unary_drop", copy.deepcopy(node.operand)))
    elif isinstance(node, ast.BoolOp):
        m = copy.deepcopy(node)
        m.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        out.append(("boolop_swap", m))
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name in ("max", "min"):
            m = copy.deepcopy(node)
            m.func = ast.Name(id="min" if name == "max" else "max", ctx=ast.Load())
            out.append(("max_min_swap", m))
        if name == "ceil" and len(node.args) == 1 and not node.keywords:
            out.append(("drop_ceil", copy.deepcopy(node.args[0])))
    elif isinstance(node, ast.AugAssign):
        swap = AUG_SWAP.get(type(node.op))
        if swap:
            m = copy.deepcopy(node)
            m.op = swap()
            out.append(("augassign_swap", m))
    return out


def _line_starts(data: bytes) -> list[int]:
    starts, pos = [0], 0
    for line in data.splitlines(keepends=True):
        pos += len(line)
        starts.append(pos)
    return starts


def mutants_of(path: Path) -> list[tuple[Mutant, int, int, bytes]]:
    """Every mutant of one file with its byte span and replacement bytes."""
    data = path.read_bytes()
    tree = ast.parse(data)
    skip = _excluded_nodes(tree)
    starts = _line_starts(data)
    rel = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    out = []
    for node in ast.walk(tree):
        if id(node) in skip or not hasattr(node, "lineno") or node.end_lineno is None:
            continue
        for name, mutated in _variants(node):
            a = starts[node.lineno - 1] + node.col_offset
            b = starts[node.end_lineno - 1] + node.end_col_offset
            original = data[a:b].decode()
            if isinstance(node, ast.stmt):
                text = ast.unparse(mutated)
            else:
                text = "(" + ast.unparse(mutated) + ")"
            one_line = " ".join(original.split())
            m = Mutant(path=rel, line=node.lineno, col=node.col_offset, end_line=node.end_lineno, operator=name,
                       original=one_line if len(one_line) <= 80 else one_line[:77] + "...",
                       replacement=text if len(text) <= 80 else text[:77] + "...")
            out.append((m, a, b, text.encode()))
    # a mutant must still compile (e.g. a constant in a position where the text differs)
    valid = []
    for m, a, b, text in out:
        try:
            compile(data[:a] + text + data[b:], str(path), "exec")
        except SyntaxError:
            continue
        valid.append((m, a, b, text))
    return valid


# --- which tests run which lines ---------------------------------------------------------------------------


class _ContextPlugin:
    """Switch coverage's context to each test's node id, and time each test."""

    def __init__(self, cov):
        self.cov = cov
        self.durations: dict[str, float] = {}
        self.failed: list[str] = []

    def pytest_runtest_setup(self, item):
        self.cov.switch_context(item.nodeid)

    def pytest_runtest_logreport(self, report):
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        if report.failed:
            self.failed.append(report.nodeid)


def coverage_map(workdir: Path, tests: list[str], sources: list[Path], exclude: list[str]):
    """(line -> test ids per file, import-time lines per file, durations, all test ids) of the unmutated tree."""
    import coverage
    import pytest

    os.chdir(workdir)
    sys.path.insert(0, str(workdir))
    cov = coverage.Coverage(data_file=None, source=[str(s) for s in sources], branch=False)
    plugin = _ContextPlugin(cov)
    cov.start()
    rc = pytest.main(["-q", "-p", "no:cacheprovider", "-x", *tests, *[f"--deselect={d}" for d in []]],
                     plugins=[plugin])
    cov.stop()
    if rc != 0:
        raise SystemExit(f"the unmutated tree fails its tests ({plugin.failed}); fix that first")
    data = cov.get_data()
    by_file, at_import = {}, {}
    for f in data.measured_files():
        rel = str(Path(f).relative_to(workdir))
        lines: dict[int, set[str]] = {}
        for line, contexts in data.contexts_by_lineno(f).items():
            for c in contexts:
                if c and not any(x in c for x in exclude):
                    lines.setdefault(line, set()).add(c)
                elif not c:
                    at_import.setdefault(rel, set()).add(line)
        by_file[rel] = lines
    tests_all = [t for t in plugin.durations if not any(x in t for x in exclude)]
    return by_file, at_import, plugin.durations, tests_all


# --- workers ---------------------------------------------------------------------------------------------------


def _make_copy(root: Path) -> Path:
    dest = root / "tree"
    dest.mkdir(parents=True)
    for item in COPY_ITEMS:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis", "report.md",
                                                                             "report.json"))
        elif src.exists():
            shutil.copy2(src, dest / item)
    import compileall
    compileall.compile_dir(str(dest / "archsim"), quiet=1)
    return dest


def _run_child(workdir: Path, tests: list[str], timeout: float) -> str:
    """Run ``tests`` in a forked child (pytest already imported here); killed / survived / timeout / error."""
    if not tests:
        return "uncovered"
    pid = os.fork()
    if pid == 0:  # the child: a fresh import of archsim from the worker's tree
        try:
            os.chdir(workdir)
            sys.path.insert(0, str(workdir))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import pytest
            rc = pytest.main(["-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", *tests])
            os._exit(int(rc))
        except BaseException:
            os._exit(99)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return "survived" if code == 0 else "killed" if code == 1 else f"error({code})"
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.02)


def _worker(index: int, root: str, jobs, results, plan: dict) -> None:
    sys.dont_write_bytecode = True  # a mutant's bytecode never lands in a __pycache__
    workdir = Path(root) / f"w{index}" / "tree"
    import pytest  # noqa: F401  (warm: the children inherit it)
    import numpy, yaml, networkx, hypothesis  # noqa: F401,E401
    while True:
        job = jobs.get()
        if job is None:
            return
        key, path, a, b, text, tests, timeout = job
        if not path:  # the unmutated tree (the baseline check)
            results.put((key, _run_child(workdir, tests, timeout), 0.0, len(tests)))
            continue
        target = workdir / path
        original = target.read_bytes()
        try:
            target.write_bytes(original[:a] + text + original[b:])
            t0 = time.monotonic()
            outcome = _run_child(workdir, tests, timeout)
            results.put((key, outcome, time.monotonic() - t0, len(tests)))
        finally:
            target.write_bytes(original)


# --- the run ---------------------------------------------------------------------------------------------------


def _read_equivalent(path: Path) -> dict[str, str]:
    """``equivalent.txt``: lines ``KEY  # reason`` (KEY as the report prints it)."""
    out = {}
    if not path.exists():
        return out
    for raw in path.read_text().splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        key, _, reason = raw.partition("  # ")
        out[key.strip()] = reason.strip()
    return out


def _sample_rank(m: Mutant, seed: int, occurrence: dict) -> str:
    """A mutant's place in the seeded sample, from what it edits (not its line number), so a sample stays the same
    mutants when code elsewhere moves."""
    ident = f"{seed}|{m.path}|{m.operator}|{m.original}|{m.replacement}|{occurrence[m.key]}"
    return hashlib.sha256(ident.encode()).hexdigest()


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.read_bytes())
    return h.hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--paths", nargs="*", default=list(DEFAULT_PATHS), help="source files or folders to mutate")
    ap.add_argument("--tests", nargs="*", default=list(DEFAULT_TESTS), help="the test selection")
    ap.add_argument("--exclude-tests", nargs="*", default=[], help="drop tests whose id contains any of these")
    ap.add_argument("--max-mutants", type=int, default=400, help="sample this many (0: all)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--time-budget", type=float, default=1800.0, help="seconds; no new mutant starts after it")
    ap.add_argument("--report", default=str(HERE / "report.md"))
    ap.add_argument("--equivalent", default=str(HERE / "equivalent.txt"))
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--only", nargs="*", default=[], help="run only mutants whose key contains one of these")
    ap.add_argument("--rerun-survivors", default=None, metavar="REPORT.json",
                    help="re-run only the survivors of an earlier report (same sample); the new report keeps its "
                         "killed mutants and their outcomes")
    args = ap.parse_args(argv)

    files = []
    for p in args.paths:
        path = (REPO / p).resolve()
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    all_mutants = [m for f in files for m in mutants_of(f)]
    occurrence, seen = {}, {}
    for m, *_ in all_mutants:  # the n-th identical edit of a file: an id that survives edits elsewhere
        ident = (m.path, m.operator, m.original, m.replacement)
        occurrence[m.key] = seen[ident] = seen.get(ident, -1) + 1
    if args.list:
        for m, *_ in all_mutants:
            print(m.key)
        print(f"{len(all_mutants)} mutants in {len(files)} files", file=sys.stderr)
        return 0
    chosen = all_mutants
    if args.only:
        chosen = [x for x in chosen if any(s in x[0].key for s in args.only)]
    if args.max_mutants and len(chosen) > args.max_mutants:
        chosen = sorted(sorted(chosen, key=lambda x: _sample_rank(x[0], args.seed, occurrence))[:args.max_mutants],
                        key=lambda x: (x[0].path, x[0].line, x[0].col))
    previous = {}
    if args.rerun_survivors:
        previous = {r["key"]: r for r in json.loads(Path(args.rerun_survivors).read_text())["mutants"]}
        again = {k for k, r in previous.items() if r["outcome"] in ("survived", "uncovered")}
        chosen = [x for x in all_mutants if x[0].key in again]
        missing = again - {x[0].key for x in chosen}
        if missing:
            print(f"{len(missing)} survivors of the earlier report no longer exist as such (code changed): "
                  f"counted as they were", file=sys.stderr)
    before = _digest(files)

    scratch = Path(tempfile.mkdtemp(prefix="archsim-mutation-"))
    try:
        trees = [_make_copy(scratch / f"w{i}") for i in range(args.workers)]
        t0 = time.monotonic()
        try:
            import coverage  # noqa: F401
            # coverage in a child process so this one never imports archsim (the forked children must)
            ctx = mp.get_context("fork")
            q = ctx.Queue()

            def mapped():
                try:
                    q.put(coverage_map(trees[0], args.tests, [trees[0] / x for x in args.paths],
                                       args.exclude_tests))
                except BaseException as exc:  # noqa: BLE001 (reported by the parent)
                    q.put(exc)

            p = ctx.Process(target=mapped)
            p.start()
            got = q.get()
            p.join()
            if isinstance(got, BaseException):
                print(f"coverage map failed: {got!r}", file=sys.stderr)
                return 2
            by_file, at_import, durations, tests_all = got
        except ImportError:
            print("coverage is not installed: every mutant runs the whole selection", file=sys.stderr)
            by_file, at_import, durations, tests_all = None, {}, {}, list(args.tests)
        print(f"coverage map: {time.monotonic() - t0:.0f} s, {len(tests_all)} tests", file=sys.stderr)
        order = sorted(tests_all, key=lambda t: durations.get(t, 0.0))

        def selection(m: Mutant) -> list[str]:
            if by_file is None:
                return order
            lines = by_file.get(m.path, {})
            picked = set()
            for line in range(m.line, m.end_line + 1):
                picked |= lines.get(line, set())
            if not picked and any(line in at_import.get(m.path, set()) for line in range(m.line, m.end_line + 1)):
                # run at import only (a module constant, a default argument): every test may depend on it
                return order
            return sorted(picked, key=lambda t: durations.get(t, 0.0))

        ctx = mp.get_context("fork")
        jobs, results = ctx.Queue(), ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(i, str(scratch), jobs, results, {}))
                   for i in range(args.workers)]
        for w in workers:
            w.start()
        # the unmutated tree must pass the selection in this order, run as the mutants' runs are
        jobs.put(("__baseline__", "", 0, 0, b"", order, 120.0 + 5.0 * sum(durations.values())))
        _, base, _, _ = results.get()
        if base != "survived":
            print(f"the unmutated tree does not pass the selection as run here ({base}); nothing tried",
                  file=sys.stderr)
            for _ in workers:
                jobs.put(None)
            return 2
        pending = list(chosen)
        meta = {m.key: m for m, *_ in chosen}
        outcomes: dict[str, tuple[str, float, int]] = {}
        in_flight = 0
        start = time.monotonic()
        while pending or in_flight:
            while pending and in_flight < args.workers and time.monotonic() - start < args.time_budget:
                m, a, b, text = pending.pop(0)
                tests = selection(m)
                timeout = 20.0 + 3.0 * sum(durations.get(t, 1.0) for t in tests)
                jobs.put((m.key, m.path, a, b, text, tests, timeout))
                in_flight += 1
            if not in_flight:
                break
            key, outcome, secs, n = results.get()
            in_flight -= 1
            outcomes[key] = (outcome, secs, n)
            done = len(outcomes)
            if done % 25 == 0:
                killed = sum(1 for o, *_ in outcomes.values() if o in ("killed", "timeout") or o.startswith("error"))
                print(f"  {done}/{len(chosen)} tried, {killed} killed, {time.monotonic() - start:.0f} s",
                      file=sys.stderr)
        for _ in workers:
            jobs.put(None)
        for w in workers:
            w.join()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if _digest(files) != before:  # this script writes only to its scratch copies: someone else edited them
        print("note: a mutated source file of the checkout changed during the run (not by this script, which works "
              "on copies); the report is of the tree as copied at the start", file=sys.stderr)

    equivalent = _read_equivalent(Path(args.equivalent))
    rows = []
    for key, r in previous.items():  # the earlier report's mutants not re-run keep their outcome
        if key not in outcomes:
            meta.setdefault(key, Mutant(**{f: r[f] for f in ("path", "line", "col", "end_line", "operator",
                                                             "original", "replacement")}))
            outcomes[key] = (r["outcome"], r["seconds"], r["tests"])
    for key, (outcome, secs, n) in outcomes.items():
        m = meta[key]
        status = outcome
        if outcome in ("survived", "uncovered") and key in equivalent:
            status = "equivalent"
        rows.append({**asdict(m), "key": key, "status": status, "outcome": outcome, "seconds": round(secs, 2),
                     "tests": n, "reason": equivalent.get(key, "")})
    tried = len(rows)
    killed = sum(1 for r in rows if r["outcome"] in ("killed", "timeout") or r["outcome"].startswith("error"))
    equiv = sum(1 for r in rows if r["status"] == "equivalent")
    survived = tried - killed - equiv
    rate = killed / (tried - equiv) if tried > equiv else 1.0
    sampled = len(previous) if previous else len(chosen)
    summary = {"mutants_total": len(all_mutants), "sampled": sampled, "tried": tried, "killed": killed,
               "survived": survived, "equivalent": equiv, "kill_rate": rate,
               "kill_rate_without_equivalents_excluded": killed / tried if tried else 1.0,
               "tests": args.tests, "exclude_tests": args.exclude_tests, "seed": args.seed,
               "seconds": round(time.monotonic() - start, 1)}
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.with_suffix(".json").write_text(json.dumps({"summary": summary, "mutants": rows}, indent=1))
    lines = [f"# Mutation run over {', '.join(args.paths)}", "",
             f"- mutants in the code: {len(all_mutants)}; sampled {sampled} (seed {args.seed}); tried {tried}"
             + (f" (survivors of an earlier report, {Path(args.rerun_survivors).name}, re-run: {len(chosen)})" if previous else ""),
             f"- killed {killed}, survived {survived}, equivalent {equiv}",
             f"- kill rate (killed / (tried - equivalent)): {rate:.1%}",
             f"- tests: {' '.join(args.tests)}" + (f" (excluding ids containing {args.exclude_tests})"
                                                  if args.exclude_tests else ""),
             f"- wall time {summary['seconds']} s, {args.workers} workers", "", "## Surviving mutants", ""]
    for r in sorted(rows, key=lambda r: (r["path"], r["line"])):
        if r["status"] in ("survived", "uncovered"):
            lines.append(f"- `{r['key']}`" + (" (no test runs this line)" if r["status"] == "uncovered" else ""))
    lines += ["", "## Equivalent mutants (equivalent.txt)", ""]
    for r in sorted(rows, key=lambda r: (r["path"], r["line"])):
        if r["status"] == "equivalent":
            lines.append(f"- `{r['key']}`: {r['reason']}")
    report.write_text("\n".join(lines) + "\n")
    print(f"tried {tried} of {len(all_mutants)} mutants: killed {killed}, survived {survived}, equivalent {equiv}; "
          f"kill rate {rate:.1%} (report: {report})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
