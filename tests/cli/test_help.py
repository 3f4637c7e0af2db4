"""Every flag's help shows its default (cli/__init__.py: _HelpFormatter and _describe_bare_flags)."""
from __future__ import annotations

import argparse

from archsim.cli import _HelpFormatter, build_parser


def _flags(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _flags(child, f"{prefix}{name} ")
        elif action.option_strings:
            yield prefix + action.option_strings[-1], action, parser


def test_every_flag_with_a_default_says_it():
    missing = []
    for name, action, parser in _flags(build_parser()):
        default = action.default
        if default in (None, argparse.SUPPRESS, []) or isinstance(default, bool) or name.endswith("--help"):
            continue
        formatter = parser.formatter_class(prog="archsim")
        text = formatter._get_help_string(action) if isinstance(formatter, _HelpFormatter) else (action.help or "")
        if "default" not in text.lower():
            missing.append(f"{name} (default {default!r})")
    assert not missing, missing
