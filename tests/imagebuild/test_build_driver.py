"""The driver's behaviour before and around the slow part."""

import socket
import time

import pytest

from appliance.errors import ApplianceError
from pipeline.imagebuild import driver
from pipeline.imagebuild.settings import BuildSettings


@pytest.fixture
def quick_settings(tmp_path):
    return BuildSettings(work_dir=tmp_path / "work", cache_dir=tmp_path / "cache", extra_elements=(), extra_elements_path=(),
                         lxc_extra_elements=(), mirror_timeout_s=2)


@pytest.fixture
def no_host_changes(monkeypatch):
    monkeypatch.setattr(driver, "ensure_host_prerequisites", lambda **kw: pytest.fail("must not touch the host"))


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unknown_profile_is_a_clear_error(tmp_path, quick_settings):
    with pytest.raises(ApplianceError, match="unknown profile 'no-such'.*bookworm-zed"):
        driver.run_build("no-such", tmp_path / "out", settings=quick_settings, log=lambda line: None)
    assert not (tmp_path / "out").exists()


def test_unreachable_ubuntu_mirror_fails_in_seconds(tmp_path, quick_settings, monkeypatch):
    monkeypatch.setattr(driver, "ensure_host_prerequisites", lambda **kw: None)
    monkeypatch.setenv("DIB_DISTRIBUTION_MIRROR", f"http://127.0.0.1:{closed_port()}/ubuntu")
    lines = []
    start = time.monotonic()
    with pytest.raises(driver.StageFailed) as caught:
        driver.run_build("xenial-newton", tmp_path / "out", settings=quick_settings, log=lines.append)
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert caught.value.stage == "mirror-check"
    assert "DIB_DISTRIBUTION_MIRROR" in message and "dists/xenial/Release" in message
    assert str(tmp_path / "out" / "build.log") in message
    assert "[build] mirror-check …" in lines and any("FAILED" in line for line in lines)


def test_mirror_checks_cover_the_cloud_archive(monkeypatch):
    from pipeline.profiles import load_profile

    checks = driver.mirror_checks(load_profile("xenial-newton"), {"APPLIANCE_CLOUD_ARCHIVE_MIRROR": "http://127.0.0.1:9/uca"})
    assert [(c.url, c.suite, c.variable) for c in checks][1] == ("http://127.0.0.1:9/uca", "xenial-updates/newton", "APPLIANCE_CLOUD_ARCHIVE_MIRROR")


def test_stage_failure_names_stage_and_log(tmp_path):
    log_path = tmp_path / "build.log"
    log_path.write_text("")
    lines = []
    stages = driver.Stages(lines.append, log_path)
    with pytest.raises(driver.StageFailed, match=r"build stage 'lxc-rootfs' failed: boom \(full log: .*build.log\)"):
        with stages.stage("lxc-rootfs"):
            raise ApplianceError("boom")
    assert lines[0] == "[build] lxc-rootfs …" and lines[1].startswith("[build] lxc-rootfs FAILED after")
    assert "lxc-rootfs" in stages.durations


def test_stage_timing_is_announced(tmp_path):
    lines = []
    stages = driver.Stages(lines.append, tmp_path / "build.log")
    with stages.stage("manifest"):
        pass
    assert lines[-1].startswith("[build] manifest done in ") and lines[-1].endswith(" s")


def test_one_build_per_work_dir(tmp_path):
    with driver.exclusive(tmp_path):
        with pytest.raises(ApplianceError, match="another build"):
            with driver.exclusive(tmp_path):
                pass
