"""Command-line entry point: ``archsim <command> ...``.

Each subcommand lives in its own module under ``archsim.cli`` (found automatically; modules whose
name starts with ``_`` are helpers) and exposes ``add_parser(subparsers)``, which registers the
subcommand (named as its module) and sets ``handler=run`` where ``run(args) -> int`` does the work. Subcommand
modules import heavy dependencies inside ``run`` so that ``archsim --help`` stays fast, and ``main`` registers only
the subcommand the command line names (``archsim run ...`` imports no other subcommand's module).
Every ConfigError is printed as one line on stderr with exit status 2; no traceback reaches the user.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from archsim.errors import ConfigError



def _command_modules() -> list[str]:
    here = sys.modules[__name__].__path__
    return sorted(f"{__name__}.{m.name}" for m in pkgutil.iter_modules(here) if not m.name.startswith("_"))


class _HelpFormatter(argparse.HelpFormatter):
    """Help lines end with the flag's default when it has one and the text does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is argparse.SUPPRESS or isinstance(default, bool) or default == []
                or not action.option_strings or "default" in text.lower()):
            return text
        return f"{text} (default: {default})" if text else f"default: {default}"


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit status 2 (its default), without usage spam; help lines
    show defaults (_HelpFormatter)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"archsim: error: {message}\n")


class _Version(argparse.Action):
    """``--version``: print ``archsim X.Y.Z`` and exit 0; the version is looked up only when asked (archsim.version)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):  # noqa: ANN001 - argparse API
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001 - argparse API
        from archsim.version import version

        print(f"archsim {version()}")  # stdout, as argparse's own version action
        parser.exit(0)


def build_parser(commands: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``archsim`` parser with every subcommand, or only the modules in ``commands`` (full module names)."""
    parser = _Parser(prog="archsim", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_Version, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in _command_modules() if commands is None else commands:
        importlib.import_module(module).add_parser(sub)
    _describe_bare_flags(parser)
    return parser


def _describe_bare_flags(parser: argparse.ArgumentParser) -> None:
    """A flag registered without help text still shows its default in --help (argparse prints nothing for it)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _describe_bare_flags(child)
        elif (action.help is None and action.option_strings and action.default not in (None, argparse.SUPPRESS)
              and not isinstance(action.default, bool) and action.default != []):
            action.help = f"default: {action.default}"


def _warn(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings API
    """A warning as one line (``archsim: warning: ...``), not Python's file-and-source-line form."""
    print(f"archsim: warning: {message}", file=sys.stderr)


def _commands_needed(argv: list[str]) -> list[str] | None:
    """The subcommand modules a command line needs: the one it names first (``run ...``), none for ``--version``
    (its action exits before a subcommand is asked for), or every one (None) for help, errors and anything else,
    so those list all subcommands. Cold start: importing every subcommand module costs ~0.1 s."""
    if not argv:
        return None
    if argv[0] == "--version":
        return []
    name = f"{__name__}.{argv[0]}"
    return [name] if not argv[0].startswith(("_", "-")) and name in _command_modules() else None


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.showwarning = _warn
    parser = build_parser(_commands_needed(sys.argv[1:] if argv is None else [*argv]))  # not list(): archsim.cli.list shadows it
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as err:
        print(f"archsim: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("archsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`archsim ... | head`): stop quietly, as Unix tools do
        _silence_stdout()
        return 141


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
