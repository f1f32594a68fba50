"""The bench's arithmetic and record: summaries, verdicts against targets, the JSON file, the table."""

import json
import re

import pytest

from pipeline.bench.figures import Figure, Figures, record, table, write_record


def test_summary_is_min_median_max_of_every_sample():
    fig = Figure("boot", "s")
    for value in (70.0, 50.0, 61.0, 90.0):
        fig.add(value)
    assert fig.summary() == {"n": 4, "min": 50.0, "median": 65.5, "max": 90.0}
    assert fig.as_dict()["samples"] == [70.0, 50.0, 61.0, 90.0]


def test_verdict_judges_the_median_against_the_target():
    fig = Figure("boot", "s", target=60)
    assert fig.verdict() == ""  # nothing measured: no verdict, not a pass
    fig.add(59.0)
    fig.add(200.0)
    fig.add(58.0)
    assert fig.verdict() == "met"
    fig.add(300.0)
    assert fig.verdict() == "missed"
    assert Figure("x", "s").verdict() == ""


def test_record_has_machine_revision_and_every_figure(tmp_path):
    figures = Figures()
    figures.add("create → ACTIVE", 6.5, target=10)
    figures.add("idle memory", 2900, unit="MiB", target=3072)
    data = record(figures, profile="bookworm-zed", revision="abc123", options={"boots": 1}, started=0.0)
    path = write_record(data, tmp_path / "bench")
    loaded = json.loads(path.read_text())
    assert path.parent == tmp_path / "bench" and path.name.endswith("-bookworm-zed.json")
    assert loaded["git_revision"] == "abc123" and loaded["machine"]["cpus"] >= 1
    assert loaded["figures"]["create → ACTIVE"]["verdict"] == "met"
    assert loaded["figures"]["idle memory"]["unit"] == "MiB"


def test_table_lists_each_figure_with_its_verdict():
    figures = Figures()
    figures.add("boot → cloud ready", 75.0, target=60)
    figures.add("delete → gone", 3.1)
    lines = table(figures).splitlines()
    assert lines[0].split()[:2] == ["figure", "unit"]
    assert lines[1].startswith("boot → cloud ready") and lines[1].endswith("missed")
    assert lines[2].startswith("delete → gone") and "3.1" in lines[2]


BAD_BENCH_OPTIONS = [  # (profile, options, the one line expected)
    ("nope", {}, "unknown profile 'nope'"),
    ("bookworm-zed", {"boots": -1}, "bench option boots: expected 0 or more, got -1"),
    ("bookworm-zed", {"boots": 1, "build_runs": 0}, "no built image"),
    ("bookworm-zed", {"vm": True, "vm_firmware": "coreboot"}, "bench option firmware: expected one of bios, uefi, got 'coreboot'"),
    ("trixie-epoxy", {"nodes": 3}, "bench option nodes: expected 1 or 2, got 3"),
    ("trixie-epoxy", {"nodes": 2, "vm": True}, "bench option nodes: 2 runs in the container harness, not --vm"),
    ("bookworm-zed", {"nodes": 2}, "bench option nodes: profile bookworm-zed has no compute role"),
]


@pytest.mark.parametrize("profile, options, message", BAD_BENCH_OPTIONS)
def test_bench_rejects_bad_options_before_doing_anything(tmp_path, profile, options, message):
    from appliance.errors import ApplianceError
    from pipeline.bench.run import run_bench

    with pytest.raises(ApplianceError, match=re.escape(message)):
        run_bench(profile, tmp_path, **options)
    assert not (tmp_path / "bench").exists()  # nothing ran, so no record claims a run


def test_revision_is_the_commit_and_a_bench_of_changes_says_so():
    import re
    import subprocess

    from pipeline.imagebuild.driver import REPO_ROOT, git_revision

    plain = git_revision()
    assert re.fullmatch(r"[0-9a-f]{40}", plain)
    changed = subprocess.run(["git", "-C", str(REPO_ROOT), "diff", "--quiet", "HEAD"]).returncode != 0
    assert git_revision(mark_dirty=True) == plain + ("-dirty" if changed else "")
