"""Every fault of a served model gives one clear error naming the URL and the cause, no call hangs, transient
faults are retried, and the object works afterwards. The server is the real one; a proxy in front of it stops,
stalls, errs or drops on demand."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from fault_proxy import free_port
from rain_core import Rain
from rain_core.backends.served import ServedBackend
from rain_core.errors import GenerationCancelled, ServerError
from rain_core.model import RowSpec
from rain_core.models import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2")


def backend_via(proxy, tokenizer, *, retries: int) -> ServedBackend:
    """A backend connected through the proxy; a generous timeout, since the real server on a busy 2-core machine may
    take seconds (a test that needs a short one sets it after connecting)."""
    return ServedBackend(proxy.url, tokenizer=tokenizer, retries=retries, timeout=120)


def judge_row(backend: ServedBackend) -> list[int]:
    return backend.encode("Is the sky blue? Answer yes or no:")


def test_a_wrong_port_names_the_url_and_the_cause(tokenizer):
    url = f"http://127.0.0.1:{free_port()}/v1"
    start = time.monotonic()
    with pytest.raises(ServerError, match="cannot connect") as err:
        ServedBackend(url, tokenizer=tokenizer, retries=1, timeout=5)
    assert url in str(err.value) and time.monotonic() - start < 10


def test_a_wrong_model_name_lists_what_the_server_serves(served_url):
    with pytest.raises(ServerError, match=r"does not serve a model named 'no-such-model'.*smollm2"):
        Rain("smollm2", base_url=served_url, served_model="no-such-model")


def test_a_server_capping_log_probabilities_below_the_need_is_refused(served_url, tokenizer):
    with pytest.raises(ServerError, match=r"caps top log-probabilities below the 60.*--max-logprobs"):
        ServedBackend(served_url, tokenizer=tokenizer, top_logprobs=60)


def test_a_tokenizer_that_disagrees_with_the_server_is_refused(served_url, tiny_loaded):
    with pytest.raises(ServerError, match="local tokenizer does not match"):
        ServedBackend(served_url, tokenizer=tiny_loaded.tokenizer)


def test_a_stopped_server_errors_clearly_and_the_object_works_once_it_is_back(proxy, tokenizer):
    backend = backend_via(proxy, tokenizer, retries=1)
    before = backend.option_logprobs([judge_row(backend)], [9693, 2753])
    proxy.stop()
    with pytest.raises(ServerError, match="cannot connect") as err:
        backend.option_logprobs([judge_row(backend)], [9693, 2753])
    assert f"127.0.0.1:{proxy.port}" in str(err.value)
    proxy.start()
    after = backend.option_logprobs([judge_row(backend)], [9693, 2753])
    assert torch.allclose(before, after)


def test_a_timeout_is_retried_a_bounded_number_of_times_then_named(proxy, tokenizer):
    backend = backend_via(proxy, tokenizer, retries=1)
    backend.client.timeout = 1.0
    proxy.set("delay", delay=30)
    start = time.monotonic()
    with pytest.raises(ServerError, match=r"timeout.*after 2 tries"):
        backend.top_logprobs(judge_row(backend), 5)
    assert time.monotonic() - start < 8  # two 1 s tries and a 0.5 s back-off, never the 30 s stall
    proxy.set("pass")
    backend.client.timeout = 120.0
    assert len(backend.top_logprobs(judge_row(backend), 5)) == 5


def test_a_transient_server_error_is_retried_and_a_lasting_one_is_named(proxy, tokenizer):
    backend = backend_via(proxy, tokenizer, retries=2)
    proxy.set("error", errors=1)
    assert len(backend.top_logprobs(judge_row(backend), 5)) == 5  # the second try went through
    proxy.set("error", errors=10)
    with pytest.raises(ServerError, match=r"server error HTTP 503: injected overload.*after 3 tries"):
        backend.top_logprobs(judge_row(backend), 5)


def test_a_connection_dropped_mid_request_is_named(proxy, tokenizer):
    backend = backend_via(proxy, tokenizer, retries=1)
    proxy.set("drop")
    with pytest.raises(ServerError, match="dropped mid-request|cannot connect"):
        backend.rollouts(judge_row(backend), [RowSpec("full", 8)], torch.Generator().manual_seed(0))
    proxy.set("pass")
    assert backend.rollouts(judge_row(backend), [RowSpec("greedy", 4)], torch.Generator().manual_seed(0))


def test_an_abandoned_request_cancels_its_outstanding_server_requests(proxy, tokenizer):
    from rain_core import cancel

    backend = backend_via(proxy, tokenizer, retries=0)
    proxy.set("delay", delay=30)
    flag, outcome = threading.Event(), {}

    def work() -> None:
        cancel.watch(flag)
        start = time.monotonic()
        try:
            backend.rollouts(judge_row(backend), [RowSpec("full", 8)] * 2 + [RowSpec("greedy", 8)],
                             torch.Generator().manual_seed(0))
        except GenerationCancelled:
            outcome["cancelled_after"] = time.monotonic() - start

    worker = threading.Thread(target=work)
    worker.start()
    time.sleep(0.5)
    flag.set()
    worker.join(timeout=10)
    assert not worker.is_alive() and outcome["cancelled_after"] < 3
    deadline = time.monotonic() + 5
    while proxy.client_closed < 2 and time.monotonic() < deadline:  # both requests' connections were closed
        time.sleep(0.05)
    assert proxy.client_closed == 2
    proxy.set("pass")
    assert backend.top_logprobs(judge_row(backend), 3)  # and the backend still works
