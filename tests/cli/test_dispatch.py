"""cli/__init__.py registers only the subcommand a command line names (cold start): the dispatch must find the same
command the full parser would, and must not import the other subcommands' modules."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from archsim.cli import _command_modules, _commands_needed, build_parser


def _registered(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_every_subcommand_is_named_as_its_module():
    """The dispatch maps ``archsim NAME`` to module ``archsim.cli.NAME``: true only while each module registers its
    own name (and no alias)."""
    modules = _command_modules()
    assert _registered(build_parser()) == sorted(m.rsplit(".", 1)[1] for m in modules)
    for module in modules:
        assert _registered(build_parser([module])) == [module.rsplit(".", 1)[1]]


@pytest.mark.parametrize("argv,needed", [
    (["run", "kimi_k2", "--hw", "h100"], ["archsim.cli.run"]),
    (["list", "hardware"], ["archsim.cli.list"]),
    (["--version"], []),
    ([], None),                      # usage error: lists every subcommand
    (["--help"], None),
    (["-h", "run"], None),
    (["rnu", "kimi_k2"], None),      # a typo: argparse's "invalid choice" lists every subcommand
    (["_common"], None),             # a helper module is no subcommand
])
def test_commands_needed(argv, needed):
    assert _commands_needed(argv) == needed


def _modules_after(argv: list[str]) -> set[str]:
    code = ("import io, sys, contextlib\nfrom archsim.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    main({argv!r})\n"
            "print(' '.join(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_a_subcommand_imports_no_other_subcommand_and_no_networkx():
    loaded = _modules_after(["list", "hardware"])
    assert "archsim.cli.list" in loaded
    others = {m for m in _command_modules() if m != "archsim.cli.list"}
    assert not others & loaded, others & loaded
    assert "networkx" not in loaded


def test_run_json_imports_no_networkx_serving_sim_or_plots():
    """The projection path (archsim run ... --format json) is config, graph, cost, mapping and report only."""
    loaded = _modules_after(["run", "kimi_k2", "--hw", "h100", "--format", "json"])
    assert "archsim.api" in loaded
    heavy = {m for m in loaded if m.split(".")[0] in ("networkx", "simpy", "matplotlib", "scipy")
             or m.startswith(("archsim.serving", "archsim.sim", "archsim.report.plots", "archsim.report.html",
                              "archsim.report.table", "archsim.graph.small", "archsim.small_run"))}
    assert not heavy, sorted(heavy)
