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
