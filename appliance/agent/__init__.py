"""The first-boot agent: turns a booted appliance image into a working cloud.

It runs as ``appliance-firstboot.service`` on the appliance's system Python. Its work is a
list of small steps, each idempotent; a journal records which finished, so a crash or power
cut resumes at the step that did not.
"""
