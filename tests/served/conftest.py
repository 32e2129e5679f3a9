"""The `served` tier: the engine as a client of a real vLLM server that `make test-served` starts on 127.0.0.1
(its URL in ``RAIN_SERVED_URL``). Nothing here fakes a server; the fault proxy sits in front of the real one."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest

from fault_proxy import FaultProxy

pytestmark = pytest.mark.served


def pytest_collection_modifyitems(items):  # noqa: ANN001
    for item in items:
        if "tests/served/" in str(item.fspath):
            item.add_marker(pytest.mark.served)


@pytest.fixture(scope="session")
def served_url() -> str:
    url = os.environ.get("RAIN_SERVED_URL")
    if not url:
        pytest.fail("RAIN_SERVED_URL is not set: run this tier through `make test-served`, which starts vLLM.")
    return url


@pytest.fixture(scope="session")
def served_backend(served_url):
    from rain_core import shared_backend
    from rain_core.backends.served.options import ServerOptions

    return shared_backend("smollm2", server=ServerOptions(base_url=served_url))


@pytest.fixture()
def proxy(served_url):
    """A fault proxy in front of the real server (passing everything until told otherwise)."""
    parsed = urlparse(served_url)
    fault = FaultProxy((parsed.hostname, parsed.port))
    yield fault
    fault.close()
