"""The join token: its text form round-trips, and every kind of bad token is refused with one
line that never shows the token (it holds the secret)."""

import base64
import json

import pytest

from appliance.cluster import token as tokens
from appliance.cluster.errors import ClusterError
from appliance.cluster.token import JoinToken, check_not_expired, parse_token

CA_DER = b"0\x82\x01\x00 a CA certificate, as DER"
SECRET = tokens.new_secret()
GOOD = JoinToken(name="c2", host="10.254.0.10", port=9777, expires=2_000_000_000,
                 ca_sha256=tokens.ca_fingerprint(CA_DER), secret=SECRET)


def encode(fields: dict) -> str:
    body = json.dumps(fields, separators=(",", ":")).encode()
    return "aj1." + base64.urlsafe_b64encode(body).decode().rstrip("=")


def fields(**changes):
    data = {"name": GOOD.name, "host": GOOD.host, "port": GOOD.port, "expires": GOOD.expires,
            "ca_sha256": GOOD.ca_sha256, "secret": GOOD.secret}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def test_round_trip_and_white_space():
    text = GOOD.text()
    assert text.startswith("aj1.") and len(text) < 300
    assert parse_token(text) == GOOD
    assert parse_token(f"  {text}\n") == GOOD


def test_the_secret_is_never_shown():
    assert SECRET not in repr(GOOD) and "hidden" in repr(GOOD)


# One row per kind of malformed token: (label, text, what the one line says).
MALFORMED = [
    ("empty", "", "it is empty"),
    ("white space only", " \n", "it is empty"),
    ("too long", "aj1." + "A" * 2000, "characters long"),
    ("wrong prefix", "aj2." + GOOD.text()[4:], "does not start with 'aj1.'"),
    ("no prefix", GOOD.text()[4:], "does not start with 'aj1.'"),
    ("not base64url", "aj1.%%%%", "not base64url-encoded JSON"),
    ("cut short", GOOD.text()[:-30], "not base64url-encoded JSON"),
    ("not JSON", "aj1." + base64.urlsafe_b64encode(b"hello there").decode().rstrip("="), "not base64url-encoded JSON"),
    ("JSON list", encode([1, 2]), "not a JSON object"),
    ("missing field", encode(fields(secret=...)), "field 'secret' is missing"),
    ("unknown field", encode({**fields(), "role": "controller"}), "unknown field 'role'"),
    ("bad name", encode(fields(name="Bad_Name")), "node name 'Bad_Name' is not valid"),
    ("reserved name", encode(fields(name="localhost")), "is reserved"),
    ("host not IPv4", encode(fields(host="controller.example")), "field 'host'"),
    ("host loopback", encode(fields(host="127.0.0.1")), "field 'host'"),
    ("port zero", encode(fields(port=0)), "field 'port' is not a whole number from 1 to 65535"),
    ("port a string", encode(fields(port="9777")), "field 'port'"),
    ("port a boolean", encode(fields(port=True)), "field 'port'"),
    ("expires a float", encode(fields(expires=1.5)), "field 'expires'"),
    ("fingerprint short", encode(fields(ca_sha256="ab" * 16)), "field 'ca_sha256' is not 64 lower-case hex digits"),
    ("fingerprint upper case", encode(fields(ca_sha256=GOOD.ca_sha256.upper())), "field 'ca_sha256'"),
    ("secret too short", encode(fields(secret="abcd")), "field 'secret' is not 32 bytes"),
    ("secret not base64url", encode(fields(secret="+" * 43)), "field 'secret'"),
]


@pytest.mark.parametrize("label,text,message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_token_is_one_line_without_the_token(label, text, message):
    with pytest.raises(ClusterError) as caught:
        parse_token(text)
    error = caught.value
    assert error.kind == "malformed"
    assert message in str(error) and "\n" not in str(error)
    assert SECRET not in str(error)
    if len(text) > 8:
        assert text.strip() not in str(error)


def test_expiry_is_checked_against_the_clock():
    check_not_expired(GOOD, now=GOOD.expires - 1)
    with pytest.raises(ClusterError, match=r"expired at 2033-05-18 03:33:20 UTC; .*appliance add-node c2") as caught:
        check_not_expired(GOOD, now=GOOD.expires)
    assert caught.value.kind == "expired"


def test_fingerprint_pins_the_controller_ca():
    tokens.check_fingerprint(GOOD, CA_DER)
    with pytest.raises(ClusterError, match="not the controller that issued the token") as caught:
        tokens.check_fingerprint(GOOD, CA_DER + b"another CA")
    assert caught.value.kind == "fingerprint"


def test_the_controller_keeps_a_digest_only():
    digest = tokens.secret_digest(SECRET)
    assert len(digest) == 64 and SECRET not in digest
    assert tokens.secret_matches(SECRET, digest)
    assert not tokens.secret_matches(tokens.new_secret(), digest)
    assert not tokens.secret_matches("not base64url!", digest)
