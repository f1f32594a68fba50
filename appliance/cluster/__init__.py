"""Scale-out: a second machine joins the appliance's cloud as a compute node.

``token``: the single-use, expiring join token (its text form, parsing, checks).
``names``: what a node may be called. ``registry``: the controller's record of the nodes it
invited and those that joined (0600 files under the state directory). ``ca``: the interface
to the appliance CA that signs each node's certificate. The design: docs/scale-out.md.
"""
