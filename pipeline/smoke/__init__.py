"""The smoke suite: proves a booted appliance works, against any target.

Host checks run through testinfra from wherever `invoke smoke` runs; the API workflow runs
on the appliance itself (sent over the same connection), because that is where Neutron's
namespaces are from which instances can be pinged and reached by SSH.
"""
