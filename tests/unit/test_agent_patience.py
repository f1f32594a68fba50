"""Every bound the first-boot agent (and the smoke, on the appliance) sets is stretched by
patience() (the site's timeouts.scale): the commands it runs, the waits it polls, and the bounds it
hands to openstacksdk (each API request's timeout, the wait for an uploaded image). One row
per kind of bound; a bound left fixed is what failed a TCG first boot in CI ("Request to
.../routers/… timed out" after 60 s)."""

import subprocess
import sys
import types

import pytest

from appliance.agent import steps_cloud, steps_openstack, system
from appliance.errors import ApplianceError

FACTOR = 4.0


def bound_of_run(monkeypatch):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["timeout"] = kwargs["timeout"]
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(system.subprocess, "run", fake_run)
    monkeypatch.setattr(system, "log", lambda line: None)
    system.run(["true"], timeout=30)
    return seen["timeout"], 30


def bound_of_wait_for(monkeypatch):
    clock = iter(range(0, 10_000, 50))
    monkeypatch.setattr(system.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(system.time, "sleep", lambda s: None)
    with pytest.raises(ApplianceError, match=r"not ready after (\d+) s") as err:
        system.wait_for("thing", lambda: False, timeout=100)
    return float(err.value.args[0].split("after ")[1].split(" s")[0]), 100


def bound_of_api_requests(monkeypatch):
    seen = {}
    fake = types.SimpleNamespace(connect=lambda **kwargs: seen.update(kwargs))
    monkeypatch.setitem(sys.modules, "openstack", fake)
    ctx = types.SimpleNamespace(
        secrets={"admin_password": "x"}, keystone_url=lambda admin=False: "http://controller:5000/v3",
        site=types.SimpleNamespace(region="RegionOne"))
    steps_openstack.connect(ctx)
    return seen["api_timeout"], steps_openstack.API_TIMEOUT


def bound_of_smoke_requests(monkeypatch):
    """The smoke and the e2e programs run on the appliance too, with the same factor."""
    from appliance.selftest import guest

    seen = {}
    monkeypatch.setitem(sys.modules, "openstack", types.SimpleNamespace(connect=lambda **kw: seen.update(kw)))
    monkeypatch.setattr(guest, "patience", lambda: FACTOR)
    guest.connect("lxc")
    return seen["api_timeout"], 120


def bound_of_image_upload(monkeypatch, tmp_path):
    seen = {}
    (tmp_path / "lxc-rootfs.img").write_bytes(b"")
    image_api = types.SimpleNamespace(images=lambda name: [], create_image=lambda **kw: seen.update(kw))
    monkeypatch.setattr(steps_cloud, "connect", lambda ctx: types.SimpleNamespace(image=image_api))
    ctx = types.SimpleNamespace(site=types.SimpleNamespace(image_name="debian"),
                                paths=types.SimpleNamespace(images=tmp_path))
    steps_cloud.upload_image(ctx)
    return seen["timeout"], 600


@pytest.mark.parametrize("measure", [bound_of_run, bound_of_wait_for, bound_of_api_requests, bound_of_image_upload,
                                     bound_of_smoke_requests],
                         ids=["command", "poll", "api-request", "image-upload-wait", "smoke-api-request"])
def test_every_bound_is_stretched_under_emulation(measure, monkeypatch, tmp_path):
    monkeypatch.setattr(system, "patience", lambda: FACTOR)
    args = (monkeypatch, tmp_path) if measure is bound_of_image_upload else (monkeypatch,)
    got, base = measure(*args)
    assert got == base * FACTOR
