"""Checks the smoke runs on the appliance itself, where Neutron's namespaces are from which
instances can be pinged and reached by SSH: ``appliance selftest api|lifecycle``, one JSON
line per check (``{"name", "passed", "seconds", "detail"}``)."""
