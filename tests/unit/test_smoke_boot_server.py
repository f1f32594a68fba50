"""appliance.selftest.guest.boot_server: the one way the smoke and the e2e programs boot an
instance; one that does not become ACTIVE is deleted before its error is raised."""

from types import SimpleNamespace as NS

import pytest

from appliance.selftest import guest

SITE = NS(network=NS(name="nat"), flavors=[NS(name="m1.tiny")], image_name="debian-lxc", keypair_name="lxckey")


class Wait(Exception):
    """What openstacksdk raises from wait_for_server (ResourceFailure / ResourceTimeout)."""


class FakeCloud:
    def __init__(self, outcome, delete_fails=False):
        self.outcome, self.delete_fails = outcome, delete_fails
        self.created, self.deleted, self.waited = [], [], []
        self.network = NS(find_network=lambda name: NS(id=f"net-{name}"))
        self.image = NS(find_image=lambda name: NS(id=f"img-{name}"))
        self.compute = self

    def find_flavor(self, name):
        return NS(id=f"flv-{name}")

    def create_server(self, **kwargs):
        self.created.append(kwargs)
        return NS(id="srv-1", status="BUILD")

    def wait_for_server(self, server, status, failures, interval, wait):
        self.waited.append((status, failures, wait))
        if self.outcome != "ACTIVE":
            raise Wait(self.outcome)
        return NS(id=server.id, status="ACTIVE")

    def delete_server(self, server):
        if self.delete_fails:
            raise RuntimeError("nova-api away")
        self.deleted.append(server.id)


@pytest.mark.parametrize("outcome, delete_fails, deleted", [
    ("ACTIVE", False, []),
    ("ERROR: No valid host was found", False, ["srv-1"]),   # a server in ERROR is removed
    ("timeout: still BUILD after 300 s", False, ["srv-1"]),
    ("ERROR: No valid host was found", True, []),          # and the wait's error still reported
])
def test_boot_server(monkeypatch, outcome, delete_fails, deleted):
    monkeypatch.setattr(guest, "patience", lambda: 4.0)
    cloud = FakeCloud(outcome, delete_fails)
    if outcome == "ACTIVE":
        assert guest.boot_server(cloud, SITE, "probe").status == "ACTIVE"
    else:
        with pytest.raises(Wait, match=outcome.split(":")[0]):
            guest.boot_server(cloud, SITE, "probe")
    assert cloud.created == [{"name": "probe", "flavor_id": "flv-m1.tiny", "image_id": "img-debian-lxc",
                              "networks": [{"uuid": "net-nat"}], "key_name": "lxckey"}]
    assert cloud.waited == [("ACTIVE", ["ERROR"], 1200.0)]   # 300 s × patience
    assert cloud.deleted == deleted
