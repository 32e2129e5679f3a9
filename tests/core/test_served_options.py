"""The served-model options without a server: declared once, validated where they are given, and a server that is
not there named with its URL (a closed local port; nothing pretends to be a server)."""

from __future__ import annotations

import dataclasses
import socket
import time

import pytest

from rain_core import ConfigError, Rain
from rain_core.backends.served.options import SERVER_FIELDS, ServerOptions
from rain_core.errors import ServerError


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.mark.parametrize("bad, match", [(dict(base_url="127.0.0.1:8000"), "http"),
                                        (dict(base_url="http://x/v1", timeout=0), "timeout")])
def test_bad_server_options_are_refused_where_they_are_given(bad, match):
    with pytest.raises(ConfigError, match=match):
        ServerOptions(**bad)
    with pytest.raises(ConfigError, match=match):
        Rain("smollm2", **bad)


def test_every_surface_takes_the_options_from_their_one_declaration():
    from rain_core.cli import build_parser
    from rain_core.integrations.settings import RainSettings

    names = {f.name for f in dataclasses.fields(ServerOptions)}
    assert set(SERVER_FIELDS) == names == {"base_url", "api_key", "timeout", "served_model"}
    assert names <= set(RainSettings.model_fields)
    parser = build_parser()
    for command in (["generate", "x"], ["bench"]):
        args = parser.parse_args(command + ["--base-url", "http://h:1/v1", "--timeout", "5", "--served-model", "m"])
        assert (args.base_url, args.timeout, args.served_model) == ("http://h:1/v1", 5.0, "m")


def test_a_server_that_is_not_there_is_named_quickly(tiny_loaded):
    from rain_core.backends.served import ServedBackend

    url = closed_port_url()
    start = time.monotonic()
    with pytest.raises(ServerError, match="cannot connect") as err:
        ServedBackend(url, tokenizer=tiny_loaded.tokenizer, retries=1, timeout=2)
    assert url in str(err.value) and "after 2 tries" in str(err.value)
    assert time.monotonic() - start < 5


def test_langchain_and_llamaindex_models_accept_a_base_url_without_connecting_until_used():
    from rain_langchain import ChatRain
    from rain_llamaindex import RainLLM

    url = closed_port_url()
    chat = ChatRain(base_url=url, timeout=2)
    llm = RainLLM(base_url=url, timeout=2)
    assert chat.server_options().base_url == llm.server_options().base_url == url
    with pytest.raises(ServerError, match="cannot connect"):
        chat.invoke("hi")
