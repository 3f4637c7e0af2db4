"""Where the shipped data folders (hardware/, workloads/, stacks/, validation/, deployments/) are found.

In the repository they live at the root, beside the package. A built wheel carries a copy of them inside the package
as ``archsim/_data/<folder>`` (setup.py's build step copies them; an editable install copies nothing and reads the
checkout). ``data_dir`` is the one lookup: ``$ARCHSIM_HOME/<folder>`` first (a user's own data), then the wheel's
copy, then the checkout, then the working directory. Modules that keep a default folder
(fidelity.cases.VALIDATION_DIR, config.hardware.HARDWARE_DIR) resolve it once, at import."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_ROOT.parent
# the wheel's copy; setup.py writes the same folder names (tests/test_packaging.py keeps the two lists equal)
PACKAGE_DATA = PACKAGE_ROOT / "_data"
DATA_FOLDERS = ("deployments", "hardware", "stacks", "validation", "workloads")


def data_dir(name: str) -> Path:
    """The first of ``$ARCHSIM_HOME/<name>``, ``<package>/_data/<name>``, ``<checkout>/<name>`` and ``./<name>``
    that is a directory; the checkout path when none is (callers report a missing folder with a one-line error).

    The wheel's copy comes before the folder beside the package because, installed, that folder is
    ``site-packages/<name>``, where another distribution may have put a package of the same name."""
    candidates = [PACKAGE_DATA / name, SOURCE_ROOT / name, Path.cwd() / name]
    home = os.environ.get("ARCHSIM_HOME")
    if home:
        candidates.insert(0, Path(home) / name)
    return next((path for path in candidates if path.is_dir()), SOURCE_ROOT / name)
