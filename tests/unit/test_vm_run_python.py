"""vm.run_python: the Python source reaches the VM's python3 unexpanded and its argv intact.
The SSH hop is replaced by a local `sh -c` (the remote end runs the command in a shell too)."""

import subprocess

import pytest

from pipeline.harness import vm

CASES = [
    # (program, args, expected stdout)
    ("import sys; print(sys.argv[1:])", (), "[]"),
    ("import sys; print(sys.argv[1:])", ("a b", "it's", "$HOME"), "['a b', \"it's\", '$HOME']"),
    ('print("$(echo expanded) `echo too` $HOME")', (), "$(echo expanded) `echo too` $HOME"),
    ("print('no newline at the end')", (), "no newline at the end"),
    ("x = '''\nPROBE\nEOF\n'''\nprint(x.split())", (), "['PROBE', 'EOF']"),
]


@pytest.mark.parametrize("program,args,expected", CASES)
def test_run_python_passes_source_and_argv_unchanged(monkeypatch, program, args, expected):
    def local_shell(state, command, *, timeout=60, key=None):
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout)

    monkeypatch.setattr(vm, "ssh", local_shell)
    result = vm.run_python(None, program, *args, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
