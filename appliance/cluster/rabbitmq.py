"""RabbitMQ permissions of a node's user ``node-<name>``: what nova-compute on that host needs,
nothing of another host's.

Names come from oslo.messaging's RabbitMQ driver with its default naming (no queue manager),
for Nova's control exchange ``nova``: an RPC server for topic ``compute`` on host ``H``
consumes queues ``compute`` and ``compute.H`` bound to the topic exchange ``nova``, and
``compute_fanout_<id>`` bound to the fanout exchange ``compute_fanout``; a caller declares
``reply_<id>`` (a queue) and the server replies to it through the default exchange
``amq.default``. ``<id>`` is a random UUID's hex. nova-compute also casts its instances to
every scheduler (``SchedulerAPI.update_instance_info``, ``sync_instance_info``: fanout casts to
topic ``scheduler``), which declares and publishes to the fanout exchange
``scheduler_fanout``; it never consumes from it. RabbitMQ checks ``configure`` to declare, ``write`` to publish to an
exchange or bind a queue, ``read`` to consume a queue or bind from an exchange; for a topic
exchange its topic permissions check the routing key a message is published with (``write``)
and a queue is bound with (``read``) (RabbitMQ "Access Control", topic authorisation).

The shape is a RabbitMQ definitions file's (``permissions`` and ``topic_permissions`` entries),
so the controller's definitions.json can carry node users like the ``openstack`` one. The
two-node end-to-end test (tests/e2e/test_scale_out.py) exercises each: a build, a call from
nova-api answered by the node, a restart.
"""

from __future__ import annotations

import re

from .names import node_user

VHOST = "/"
EXCHANGE = "nova"
_ID = "[0-9a-f]{32}"
# What nova-compute on a node publishes to Nova's topic exchange: calls and casts to
# nova-conductor (its replies go through the default exchange, not a topic one).
PUBLISH_KEYS = ("conductor",)


# Fanout exchanges nova-compute declares and publishes to but never reads.
PUBLISH_ONLY = ("scheduler_fanout",)
# Where oslo.messaging publishes an RPC server's replies: the default exchange, with the
# caller's reply queue as routing key (impl_rabbit.Connection.direct_send). Write only;
# RabbitMQ checks no queue behind the default exchange (see the residual risks in
# docs/scale-out.md).
DEFAULT_EXCHANGE = "amq.default"


def _names(host: str) -> str:
    """Every exchange and queue name nova-compute on ``host`` declares, publishes to and reads."""
    return "|".join((re.escape(EXCHANGE), "compute", re.escape(f"compute.{host}"), "compute_fanout",
                     f"compute_fanout_{_ID}", f"reply_{_ID}"))


def node_permissions(name: str) -> dict:
    """The definitions-file entries of node ``name``: ``{"permissions": {...},
    "topic_permissions": {...}}``, each anchored regular expressions."""
    user, host = node_user(name), name
    names = f"^({_names(host)})$"
    published = f"^({_names(host)}|{'|'.join(re.escape(e) for e in PUBLISH_ONLY)})$"
    written = f"^({_names(host)}|{'|'.join(re.escape(e) for e in (*PUBLISH_ONLY, DEFAULT_EXCHANGE))})$"
    topic_read = f"^(compute|{re.escape(f'compute.{host}')})$"
    topic_write = f"^({'|'.join(re.escape(k) for k in PUBLISH_KEYS)})$"
    return {
        "permissions": {"user": user, "vhost": VHOST, "configure": published, "write": written,
                        "read": names},
        "topic_permissions": {"user": user, "vhost": VHOST, "exchange": EXCHANGE, "write": topic_write,
                              "read": topic_read},
    }


def allows(pattern: str, name: str) -> bool:
    """Whether RabbitMQ's check of ``name`` against ``pattern`` passes (an unanchored search,
    as RabbitMQ does; our patterns anchor themselves)."""
    return re.search(pattern, name) is not None
