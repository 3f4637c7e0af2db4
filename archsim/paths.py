"""Where the shipped data folders (hardware/, validation/, workloads/) are found.

They live at the repository root, beside the package, not inside it, so a source checkout (editable install or
``PYTHONPATH``) finds them next to ``archsim/``. A regular ``pip install .`` copies only the package into
site-packages; the folders are then taken from ``$ARCHSIM_HOME`` or, failing that, the working directory (the
checkout the README's commands run in). Modules that keep a default folder (fidelity.cases.VALIDATION_DIR,
config.hardware.HARDWARE_DIR) resolve it once, at import."""
from __future__ import annotations

import os
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[1]


def data_dir(name: str) -> Path:
    """The first of ``$ARCHSIM_HOME/<name>``, ``<checkout>/<name>`` and ``./<name>`` that is a directory; the
    checkout path when none is (callers report a missing folder with a one-line error)."""
    candidates = [SOURCE_ROOT / name, Path.cwd() / name]
    home = os.environ.get("ARCHSIM_HOME")
    if home:
        candidates.insert(0, Path(home) / name)
    return next((path for path in candidates if path.is_dir()), SOURCE_ROOT / name)
