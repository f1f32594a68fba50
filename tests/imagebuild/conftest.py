"""Registers the `build` marker: real diskimage-builder builds (slow)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "build: runs a real diskimage-builder build (slow, needs root and loop devices)")
