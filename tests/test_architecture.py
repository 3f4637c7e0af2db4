"""The data flow of docs/architecture.md runs one way: a module may import only from its own layer or below.

Walks every module's imports with ``ast`` (so nothing is executed) and fails on an import that runs
backwards, e.g. the cost model importing the simulator.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "archsim"

# Lowest layer first. Same-layer imports are allowed.
LAYERS: list[tuple[str, ...]] = [
    ("archsim", "archsim.errors", "archsim.dtypes", "archsim.units", "archsim.routing", "archsim.paths",
     "archsim.attention_window"),
    ("archsim.config",),
    ("archsim.graph",),
    ("archsim.kernels",),
    ("archsim.cost",),
    ("archsim.mapping",),
    ("archsim.serving",),
    ("archsim.sim", "archsim.execute"),
    ("archsim.report", "archsim.small_run"),
    ("archsim.whatif", "archsim.fidelity", "archsim.kernel_api"),
    ("archsim.api",),
    ("archsim.cli", "archsim.__main__"),
]

# kernels may use only numpy, the op descriptions (design.md, principle 1) and the routing and attention-window
# rules they share with config and graph (archsim.routing, archsim.attention_window, docs/architecture.md)
KERNEL_ALLOWED = ("archsim.kernels", "archsim.graph.op", "archsim.dtypes", "archsim.errors", "archsim.routing",
                  "archsim.attention_window")


def _layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = index, len(name)
    if best is None:
        raise AssertionError(f"module {module} is in no layer of tests/test_architecture.py")
    return best


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")
                if not path.name == "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(target)
    return [name for name in found if name == "archsim" or name.startswith("archsim.")]


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_data_flow(path: Path) -> None:
    module = _module_name(path)
    own = _layer_of(module)
    for target in _imports(path, module):
        if target == "archsim":
            continue
        assert _layer_of(target) <= own, (
            f"{module} (layer {own}: {LAYERS[own]}) imports {target} "
            f"(layer {_layer_of(target)}: {LAYERS[_layer_of(target)]}), against the data flow"
        )
        if module.startswith("archsim.kernels"):
            assert target.startswith(KERNEL_ALLOWED), f"kernel module {module} imports {target}"


def test_walker_catches_a_backward_import(tmp_path: Path) -> None:
    """The walker itself must be able to fail: a cost module importing the simulator is caught."""
    fake = PACKAGE / "cost" / "fake.py"
    source = "from archsim.sim import executor\n"
    tree_imports = [n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
    assert _layer_of(_module_name(fake)) < _layer_of(tree_imports[0])
