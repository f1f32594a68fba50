"""The one error of enrolment and removal, with the kind of problem it reports.

Each kind has one line an operator can act on (the message); ``kind`` lets callers (the
join service, tests) tell them apart without matching text. The token's secret is never part
of a message.
"""

from __future__ import annotations

from ..errors import ApplianceError

# Every kind, with what it means.
KINDS = {
    "malformed": "the token's text is not a join token",
    "fingerprint": "the controller's CA is not the one the token pins",
    "expired": "the token's lifetime is over",
    "used": "the token was already redeemed",
    "mismatch": "the token's secret is not the pending invitation's",
    "unknown": "no such node on this controller",
    "clash": "the name is the controller's or another node's",
    "name": "not a valid node name",
    "role": "this appliance cannot do that in its role or profile",
    "busy": "instances still live on the node",
    "ca": "the appliance CA is missing or damaged on the controller",
    "csr": "the node's certificate request is not one PEM request over an EC P-256 key, signed",
    "subject": "the certificate request names another node than the invited one",
    "usage": "the certificate request asks for more than a TLS client's usage",
}


class ClusterError(ApplianceError):
    """An enrolment or removal problem; ``kind`` is a key of KINDS."""

    def __init__(self, kind: str, message: str):
        if kind not in KINDS:
            raise ValueError(f"unknown cluster error kind {kind!r}")
        self.kind = kind
        super().__init__(message)
