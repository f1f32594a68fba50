"""docs/benchmarks.md's figures come from the bench's JSON records, newest per profile and
harness (figures it skipped from earlier ones), judged against today's targets; a doc without
its markers or a folder without records is refused."""

import json

import pytest

from appliance.errors import ApplianceError
from pipeline.bench import report


def _record(profile="bookworm-zed", vm=False, started="2026-12-01T00:00:00Z", median=50.0):
    return {"profile": profile, "git_revision": "abc123", "started_at": started, "options": {"vm": vm},
            "machine": {"cpus": 2, "memory": "24 GiB"},
            "figures": {"boot → cloud ready": {"unit": "s", "samples": [median], "n": 1, "min": median,
                                               "median": median, "max": median, "target": 60, "verdict": "met"}}}


def _doc(tmp_path, body=None):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(body if body is not None else f"# B\n\n{report.BEGIN}\nold\n{report.END}\n\nafter\n")
    return doc


def test_newest_record_per_profile_and_harness(tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    for name, data in [("20261201T000000Z-bookworm-zed.json", _record(median=70.0)),
                       ("20261202T000000Z-bookworm-zed.json", _record(median=50.0)),
                       ("20261203T000000Z-bookworm-zed.json", _record(vm=True, median=1142.0)),
                       ("20261204T000000Z-broken.json", None)]:
        (bench / name).write_text(json.dumps(data) if data else "{not json")
    doc = _doc(tmp_path)
    assert report.update_doc(doc, bench) == 2
    text = doc.read_text()
    # Read against today's target (45 s), not the 60 s the record was run under.
    assert "| boot → cloud ready | s | 1 | 50.0 | 45.0 | missed |" in text
    assert "| boot → cloud ready | s | 1 | 1142 | 45.0 | missed |" in text
    assert "70.0" not in text and "old" not in text
    assert text.endswith("\n\nafter\n") and "container harness" in text and "VM harness" in text


@pytest.mark.parametrize("figure, row", [
    ({"unit": "s", "n": 0}, "| f | s | 0 | not measured |  |  |"),
    ({"unit": "MiB", "n": 3, "min": 2951, "median": 3000.4, "max": 3100, "target": 3072, "verdict": "met"},
     "| f | MiB | 3 | 3000 (2951–3100) | 3072 | met |"),
    ({"unit": "s", "n": 2, "min": 1.84, "median": 2.4, "max": 3.36}, "| f | s | 2 | 2.4 (1.8–3.4) |  |  |"),
], ids=["none", "several-with-target", "small-values"])
def test_figure_rows(figure, row):
    assert report.figure_row("f", figure) == row


@pytest.mark.parametrize("body, records, message", [
    ("# no markers\n", True, "expected one generated section"),
    (f"{report.END}\n{report.BEGIN}\n", True, "expected one generated section"),
    (None, False, "no bench record"),
], ids=["no-markers", "markers-reversed", "no-records"])
def test_refusals(tmp_path, body, records, message):
    bench = tmp_path / "bench"
    bench.mkdir()
    if records:
        (bench / "20261201T000000Z-bookworm-zed.json").write_text(json.dumps(_record()))
    doc = _doc(tmp_path, body)
    before = doc.read_text()
    with pytest.raises(ApplianceError, match=message):
        report.update_doc(doc, bench)
    assert doc.read_text() == before


def test_figures_the_newest_run_skipped_come_from_the_newest_earlier_record(tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    older, old, new = _record(median=70.0), _record(median=60.0), _record(median=40.0)
    for data, burst in ((older, 90.0), (old, 75.0)):
        data["figures"]["burst: all ACTIVE"] = {"unit": "s", "n": 1, "min": burst, "median": burst, "max": burst}
    new["figures"]["burst: all ACTIVE"] = {"unit": "s", "n": 0}
    for name, data in (("20261201T000000Z-bookworm-zed.json", older), ("20261202T000000Z-bookworm-zed.json", old),
                       ("20261203T000000Z-bookworm-zed.json", new)):
        (bench / name).write_text(json.dumps(data))
    doc = _doc(tmp_path)
    report.update_doc(doc, bench)
    text = doc.read_text()
    assert "| boot → cloud ready | s | 1 | 40.0 | 45.0 | met |" in text
    assert "| burst: all ACTIVE | s | 1 | 75.0 | 60.0 | missed | `20261202T000000Z-bookworm-zed.json` |" in text
    assert "90.0" not in text and "| 60.0 | 45.0" not in text


@pytest.mark.parametrize("options,harness", [
    ({}, "container"), ({"vm": True}, "VM"), ({"nodes": 1}, "container"), ({"nodes": 2}, "container, two nodes"),
])
def test_a_two_node_record_is_a_harness_of_its_own(options, harness):
    from pipeline.bench.report import harness_of

    assert harness_of({"options": options}) == harness
