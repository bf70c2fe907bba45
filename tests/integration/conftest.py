"""conftest.py - fixtures: one wsgate per test module (started from the real binary on a free
loopback port, stopped with SIGTERM and checked for a clean exit), plus a factory for tests
that need their own gateway settings."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from wsharness import start_gateway  # noqa: E402


@pytest.fixture(scope="module")
def module_gateway(request, tmp_path_factory):
    """A gateway per module. A module tunes it with a module-level GATEWAY_SETTINGS dict
    (keys: gateway, heartbeat, routes), e.g. short heartbeat timers."""
    settings = getattr(request.module, "GATEWAY_SETTINGS", {})
    g = start_gateway(tmp_path_factory, name=request.module.__name__, **settings)
    yield g
    g.stop()


@pytest.fixture
def gw(module_gateway):
    """The module's gateway; after each test it must still be running (a crash is reported
    at the test that caused it, with the gateway's stderr)."""
    yield module_gateway
    assert module_gateway.running(), (
        f"wsgate died during this test (status {module_gateway.proc.returncode}); stderr:\n"
        f"{module_gateway.stderr()}")


@pytest.fixture
def gateway_factory(tmp_path_factory):
    """Starts gateways with custom settings; each is stopped (and checked) after the test
    unless the test stopped it itself."""
    made = []

    def make(**kw):
        g = start_gateway(tmp_path_factory, **kw)
        made.append(g)
        return g

    yield make
    errors = []
    for g in made:
        try:
            g.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)
