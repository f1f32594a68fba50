"""The join token: what `appliance add-node NAME` prints and `appliance join` reads.

Text form: ``aj1.`` followed by the unpadded base64url (RFC 4648 §5) of a compact JSON object
with exactly these fields::

    name       the node's name (names.check_node_name)
    host       the controller's management address (IPv4, dotted quad)
    port       the controller's join service, TCP port 1-65535
    expires    end of validity, whole seconds since the Unix epoch (UTC)
    ca_sha256  SHA-256 of the controller CA's certificate (DER), 64 lower-case hex digits
    secret     32 random bytes (``secrets.token_bytes``), unpadded base64url: 43 characters

About 280 characters in all: one line to copy, short enough for a NoCloud file or a QR code.
The fingerprint lets the node check, before it sends the secret, that it talks to the
controller that issued the token (pinning; the node has no CA yet). The controller keeps only
``secret_digest(secret)``: the secret carries 256 bits of entropy, so one SHA-256 is as good
as a slow password hash and needs no salt (nothing to guess, nothing to precompute).

Errors are ClusterError with one line each: ``malformed`` (never echoing the text, which
holds the secret), ``expired``, ``fingerprint``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import time
from dataclasses import dataclass

from .errors import ClusterError
from .names import check_node_name

PREFIX = "aj1."
SECRET_BYTES = 32
# Far above a real token's ~280 characters; bounds the work spent on whatever is pasted.
MAX_TEXT = 1024
FIELDS = ("name", "host", "port", "expires", "ca_sha256", "secret")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class JoinToken:
    name: str
    host: str
    port: int
    expires: int  # Unix seconds, UTC
    ca_sha256: str  # hex
    secret: str = ""  # base64url; never logged, never shown

    def __repr__(self) -> str:  # a traceback or a debug print must not show the secret
        return (f"JoinToken(name={self.name!r}, host={self.host!r}, port={self.port}, expires={self.expires}, "
                f"ca_sha256={self.ca_sha256[:12]!r}..., secret=<hidden>)")

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def text(self) -> str:
        """The token as the operator carries it."""
        body = json.dumps({f: getattr(self, f) for f in FIELDS}, separators=(",", ":"), sort_keys=True)
        return PREFIX + _b64encode(body.encode("utf-8"))


def new_secret() -> str:
    return _b64encode(secrets.token_bytes(SECRET_BYTES))


def secret_digest(secret: str) -> str:
    """What the controller stores of a secret: SHA-256 of its bytes, hex."""
    return hashlib.sha256(_b64decode(secret)).hexdigest()


def secret_matches(secret: str, digest: str) -> bool:
    """Whether ``secret`` is the one ``digest`` was made from (constant-time compare)."""
    try:
        return hmac.compare_digest(secret_digest(secret), digest)
    except ValueError:
        return False


def ca_fingerprint(ca_der: bytes) -> str:
    """SHA-256 of a CA certificate in DER form, hex (what ``ca_sha256`` holds)."""
    return hashlib.sha256(ca_der).hexdigest()


def parse_token(text: str) -> JoinToken:
    """A JoinToken from its text form (surrounding white space, e.g. a newline, ignored).

    Raises ClusterError(kind="malformed") naming what is wrong but never the text itself."""
    def bad(problem: str):
        raise ClusterError("malformed", f"not a join token: {problem} (copy the whole line `appliance add-node` "
                                        "printed on the controller)")

    if not isinstance(text, str):
        bad("expected text")
    text = text.strip()
    if not text:
        bad("it is empty")
    if len(text) > MAX_TEXT:
        bad(f"it is {len(text)} characters long; a join token has fewer than {MAX_TEXT}")
    if not text.startswith(PREFIX):
        bad(f"it does not start with {PREFIX!r}")
    try:
        data = json.loads(_b64decode(text[len(PREFIX):]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        bad("its body is not base64url-encoded JSON (cut short or altered?)")
    if not isinstance(data, dict):
        bad("its body is not a JSON object")
    missing = [f for f in FIELDS if f not in data]
    if missing:
        bad(f"field {missing[0]!r} is missing")
    extra = sorted(set(data) - set(FIELDS))
    if extra:
        bad(f"unknown field {extra[0]!r}")
    try:
        check_node_name(data["name"])
    except ClusterError as exc:
        bad(str(exc))
    host = data["host"]
    try:
        address = ipaddress.IPv4Address(host) if isinstance(host, str) else None
    except ValueError:
        address = None
    if address is None or address.is_unspecified or address.is_loopback or address.is_multicast:
        bad("field 'host' is not the controller's unicast IPv4 address")
    for field, low, high in (("port", 1, 65535), ("expires", 1, 2**63 - 1)):
        value = data[field]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            bad(f"field {field!r} is not a whole number from {low} to {high}")
    if not isinstance(data["ca_sha256"], str) or not _HEX64.fullmatch(data["ca_sha256"]):
        bad("field 'ca_sha256' is not 64 lower-case hex digits")
    secret = data["secret"]
    if not isinstance(secret, str) or not _B64URL.fullmatch(secret) or len(_safe_decode(secret)) != SECRET_BYTES:
        bad(f"field 'secret' is not {SECRET_BYTES} bytes in base64url")
    return JoinToken(name=data["name"], host=host, port=data["port"], expires=data["expires"],
                     ca_sha256=data["ca_sha256"], secret=secret)


def check_not_expired(token: JoinToken, now: float | None = None) -> None:
    """ClusterError(kind="expired") once ``now`` (Unix seconds; default: the clock) is at or
    past the token's end of validity."""
    now = time.time() if now is None else now
    if now >= token.expires:
        raise ClusterError("expired", f"the join token for node {token.name!r} expired at {utc(token.expires)}; "
                                      f"issue a new one on the controller: appliance add-node {token.name}")


def check_fingerprint(token: JoinToken, ca_der: bytes) -> None:
    """ClusterError(kind="fingerprint") unless the CA certificate the controller presented
    (DER) is the one the token pins. Called before the secret is sent."""
    found = ca_fingerprint(ca_der)
    if not hmac.compare_digest(found, token.ca_sha256):
        raise ClusterError("fingerprint", f"the controller at {token.endpoint} presented CA SHA-256 {found[:16]}..., "
                                          f"the token pins {token.ca_sha256[:16]}...: not the controller that issued "
                                          "the token (wrong address, a re-installed controller, or a machine in between)")


def utc(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    """Unpadded base64url; ValueError for anything else (binascii.Error is one)."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def _safe_decode(text: str) -> bytes:
    try:
        return _b64decode(text)
    except ValueError:
        return b""
