"""The habits CI keeps: ruff (pyflakes, pycodestyle, import order) over the Python, DIB's
dib-lint over elements/, and the appliance package importing nothing of the build host's."""

import ast
import os
import subprocess
import sys
from pathlib import Path

from project import ROOT

BIN = Path(sys.executable).parent


def test_ruff_is_clean():
    result = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dib_lint_is_clean(tmp_path):
    # dib-lint checks ELEMENTS_DIR and LIB_DIR (diskimage-builder's own lib by default).
    env = dict(os.environ, ELEMENTS_DIR="elements", LIB_DIR=str(tmp_path), PATH=f"{BIN}:{os.environ['PATH']}")
    result = subprocess.run([str(BIN / "dib-lint")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    errors = [line for line in result.stdout.splitlines() if line.startswith(("ERROR", " --"))]
    assert result.returncode == 0 and result.stdout.rstrip().endswith("PASS"), "\n".join(errors) or result.stderr


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports stay inside its package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_appliance_package_imports_nothing_of_the_host_side():
    offenders = {str(path.relative_to(ROOT)): sorted(n for n in imported_modules(path)
                                                     if n.split(".")[0] in ("pipeline", "tasks", "tests"))
                 for path in (ROOT / "appliance").rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolved_imports(path: Path, package_root: str) -> set[str]:
    """Modules of ``package_root`` a file imports, at module level or inside a function,
    relative imports resolved; ``from pkg import mod`` counts as importing pkg.mod."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == package_root}


def test_no_import_circle_in_the_appliance_package():
    modules = {_module_name(p): p for p in (ROOT / "appliance").rglob("*.py")}
    graph = {name: {m for m in _resolved_imports(path, "appliance") if m in modules and m != name}
             for name, path in modules.items()}
    # Package __init__ modules only re-export; a module importing its own package is no circle.
    graph = {name: {m for m in deps if not name.startswith(m + ".")} for name, deps in graph.items()}
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "open"
        stack.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (circle := visit(dep)):
                return circle
        stack.pop()
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            circle = visit(name)
            assert circle is None, " -> ".join(circle)
