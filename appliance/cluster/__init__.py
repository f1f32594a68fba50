"""Scale-out: a second machine joins the appliance's cloud as a compute node.

``token``: the single-use, expiring join token (its text form, parsing, checks).
``names``: what a node may be called. ``registry``: the controller's record of the nodes it
invited and those that joined (0600 files under the state directory). ``ca``: the appliance
CA (appliance/tls.py) signing each node's client certificate, and the node's key and request.
``joinservice``: one join on the controller, socket aside; ``joinserver``: its HTTPS socket;
``issuer``: the cloud side of a join (a node's RabbitMQ and Keystone users), made all or none
(``changes``).
``bundle``: what a node receives; ``node``: where it keeps it; ``nodeconf``: the node's own
configuration made from it. ``enrol`` and ``commands``: the `appliance add-node`, `join` and
`remove-node` verbs. The design: docs/scale-out.md.
"""
