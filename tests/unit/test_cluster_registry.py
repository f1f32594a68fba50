"""The controller's node registry: invitations, single use, expiry, removal; files 0600 and
free of secrets; one clear line for every refusal."""

import json
import stat

import pytest

from appliance.cluster.errors import ClusterError
from appliance.cluster.names import check_node_name, node_user
from appliance.cluster.registry import NodeRegistry
from appliance.errors import ApplianceError

NOW = 1_800_000_000
HOUR = 3600
ADDRESS = "10.254.0.11"


@pytest.fixture
def registry(tmp_path):
    return NodeRegistry(tmp_path / "cluster")


def invite(registry, name="c2", now=NOW):
    return registry.invite(name, controller="c1", now=now, lifetime=HOUR)


def test_invite_then_redeem_then_joined(registry):
    node, secret = invite(registry)
    assert node.state == "invited" and node.expires_at == NOW + HOUR
    redeemed = registry.redeem("c2", secret, now=NOW + 60, address=ADDRESS)
    assert (redeemed.state, redeemed.address, redeemed.secret_sha256) == ("joining", ADDRESS, "")
    assert registry.mark_joined("c2").state == "joined"
    assert registry.has_nodes() and registry.has_members() and not registry.has_pending(NOW)


def test_members_and_pending_invitations(registry):
    invite(registry)
    assert registry.has_pending(NOW) and not registry.has_members()
    assert not registry.has_pending(NOW + HOUR)  # expired: nothing can be redeemed


def test_files_are_private_and_hold_no_secret(registry):
    _, secret = invite(registry)
    for path in (registry.path, registry.lock_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(registry.directory.stat().st_mode) == 0o700
    text = registry.path.read_text()
    assert secret not in text
    assert json.loads(text)["nodes"]["c2"]["state"] == "invited"
    assert secret not in repr(registry.get("c2"))


def test_an_expired_invitation_is_replaced_and_its_token_dies(registry):
    _, old = invite(registry)
    _, new = invite(registry, now=NOW + HOUR)
    with pytest.raises(ClusterError) as caught:
        registry.redeem("c2", old, now=NOW + HOUR + 1, address=ADDRESS)
    assert caught.value.kind == "mismatch"
    registry.redeem("c2", new, now=NOW + HOUR + 1, address=ADDRESS)


def test_remove_cancels_an_invitation(registry):
    _, secret = invite(registry)
    assert registry.remove("c2").state == "invited"
    assert not registry.has_nodes()
    with pytest.raises(ClusterError) as caught:
        registry.redeem("c2", secret, now=NOW, address=ADDRESS)
    assert caught.value.kind == "unknown"


def _joined(registry):
    _, secret = invite(registry)
    registry.redeem("c2", secret, now=NOW, address=ADDRESS)
    return secret


# One row per refusal: (label, action on a registry, kind, what the one line says).
REFUSALS = [
    ("bad node name", lambda r: invite(r, name="C2"), "name", "node name 'C2' is not valid"),
    ("name with a dot", lambda r: invite(r, name="c2.example"), "name", "not valid"),
    ("name too long", lambda r: invite(r, name="c" * 64), "name", "not valid"),
    ("reserved name", lambda r: invite(r, name="localhost"), "name", "is reserved"),
    ("the controller's name", lambda r: invite(r, name="c1"), "clash", "this controller's own host name"),
    ("pending invitation", lambda r: (invite(r), invite(r, now=NOW + 10)), "clash",
     "already invited until 2027-01-15 09:00:00 UTC (appliance remove-node c2 cancels"),
    ("joined node", lambda r: (_joined(r), invite(r, now=NOW + 2 * HOUR)), "clash", "that node is joining"),
    ("unknown node", lambda r: r.redeem("c9", "x" * 43, now=NOW, address=ADDRESS), "unknown", "no node 'c9' is invited"),
    ("token used twice", lambda r: r.redeem("c2", _joined(r), now=NOW + 5, address=ADDRESS), "used",
     "was already used (at 2027-01-15 08:00:00 UTC); a token joins once"),
    ("token expired", lambda r: r.redeem("c2", invite(r)[1], now=NOW + HOUR, address=ADDRESS), "expired",
     "expired at 2027-01-15 09:00:00 UTC; issue a new one"),
    ("wrong secret", lambda r: (invite(r), r.redeem("c2", "A" * 43, now=NOW, address=ADDRESS)), "mismatch",
     "not the one of its pending invitation"),
    ("remove unknown", lambda r: r.remove("c3"), "unknown", "no node 'c3' on this controller"),
    ("get unknown", lambda r: r.get("c3"), "unknown", "appliance add-node c3 invites it"),
    ("remove bad name", lambda r: r.remove("-c3"), "name", "not valid"),
]


@pytest.mark.parametrize("label,action,kind,message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_are_one_clear_line(registry, label, action, kind, message):
    with pytest.raises(ClusterError) as caught:
        action(registry)
    assert caught.value.kind == kind
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_refused_change_writes_nothing(registry):
    invite(registry)
    before = registry.path.read_bytes()
    with pytest.raises(ClusterError):
        invite(registry, now=NOW + 1)
    assert registry.path.read_bytes() == before


def test_a_damaged_file_is_reported_not_overwritten(registry):
    registry.directory.mkdir(mode=0o700)
    registry.path.write_text("{not json")
    with pytest.raises(ApplianceError, match="is damaged .* restore it from a backup"):
        invite(registry)
    assert registry.path.read_text() == "{not json"


def test_node_users_are_prefixed():
    assert node_user("c2") == "node-c2"
    assert check_node_name("a" * 63) == "a" * 63
