"""Names or paths: turn a command-line or API argument (``h100``, ``kimi_k2``, ``./my_chip.yaml``) into the file to
load. A name is a file stem in a shipped data folder (archsim.paths.data_dir), so the same arguments work in a checkout
and in an installed package."""
from __future__ import annotations

import os
from pathlib import Path

from archsim.config.yaml_io import did_you_mean
from archsim.errors import ConfigError
from archsim.paths import data_dir

# a file name ending in one of these is a path the user means, never a shipped name to look up
PATH_SUFFIXES = (".yaml", ".yml", ".json")


def shipped_names(folder: str) -> list[str]:
    """The stems of the YAML files in the shipped ``folder`` (``hardware`` -> ``a100``, ``h100``, ...)."""
    return sorted(p.name[: -len(".yaml")] for p in data_dir(folder).glob("*.yaml"))


def shipped_file(folder: str, name: str) -> Path | None:
    """``<folder>/<name>.yaml`` when ``name`` is a shipped name, else None."""
    if not name or looks_like_path(name):
        return None
    path = data_dir(folder) / f"{name}.yaml"
    return path if path.is_file() else None


def looks_like_path(text: str) -> bool:
    """True for an argument with a directory part or a data-file suffix (``./x``, ``a/b``, ``chip.yaml``)."""
    seps = {os.sep, os.altsep or os.sep, "/"}
    return any(s in text for s in seps) or text.lower().endswith(PATH_SUFFIXES) or text in (".", "..")


def resolve_file(arg: str | os.PathLike, folder: str, field: str, what: str) -> str:
    """The file ``arg`` names: an existing file as given (spelled as given, so messages quote the user); else the shipped ``<folder>/<arg>.yaml``; else ``arg``
    unchanged when it looks like a path (the loader then reports "expected an existing file"). A bare word that is
    no shipped name is a one-line ConfigError listing the shipped names, e.g.
    ``<input>: hw: expected a hardware YAML path or one of a100, h100, ...; did you mean 'h100'?, got 'h10'``."""
    if not isinstance(arg, (str, os.PathLike)):
        raise ConfigError(None, field, f"a {what} path or a shipped name (a string)", type(arg).__name__)
    text = os.fspath(arg)
    if os.path.isfile(text):
        return text
    shipped = shipped_file(folder, text)
    if shipped is not None:
        return str(shipped)
    if looks_like_path(text):
        return text
    names = shipped_names(folder)
    listed = ", ".join(names) if names else f"(none: no {folder}/ folder was found)"
    raise ConfigError(None, field, f"a {what} path or one of {listed}{did_you_mean(text, names)}", text)
