"""``python -m archsim ...``: the same entry point as the ``archsim`` script (pyproject.toml [project.scripts])."""
import sys

from archsim.cli import main

if __name__ == "__main__":
    sys.exit(main())
