"""The package version: the installed distribution's metadata, or pyproject.toml in a checkout that was never
installed (``PYTHONPATH=.``). pyproject.toml's ``[project] version`` is the one place the number is written."""
from __future__ import annotations

from archsim.paths import SOURCE_ROOT

DISTRIBUTION = "archsim"  # pyproject.toml [project] name


def version() -> str:
    """``0.1.0``-style version string; ``unknown`` when neither metadata nor a checkout's pyproject.toml has one."""
    from importlib import metadata  # lazy: only --version and archsim.__version__ need it

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return _checkout_version() or "unknown"


def _checkout_version() -> str | None:
    """``[project] version`` of the pyproject.toml beside the package, if this is a checkout."""
    import tomllib  # lazy, as above; standard library from Python 3.11 (requires-python >= 3.11)

    try:
        with open(SOURCE_ROOT / "pyproject.toml", "rb") as handle:
            project = tomllib.load(handle).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    value = project.get("version")
    return value if isinstance(value, str) else None
