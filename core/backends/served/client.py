"""The HTTP side of the served backend: one pooled async client per server, requests sent together, faults named.

The search's independent requests (a round's rollouts, the judge's rows, a level's leaves) go out at once and the
caller waits for all of them; the server's continuous batching and prefix cache do the rest. The async client lives
on one event-loop thread per `ServerClient`, so callers from any thread (LangChain's batch pool, asyncio executors)
share its connection pool.

Faults: a connection refused, reset or dropped mid-request, a timeout and a 5xx answer are retried with exponential
back-off a bounded number of times, then raised as one `ServerError` naming the URL and the cause; a 4xx answer is
raised at once with the server's own message. No call waits longer than ``timeout`` per try, and a request whose
consumer abandoned the stream (`rain_core.cancel`) is cancelled, which closes its connection so the server drops it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from typing import Any, Sequence

import httpx

from ... import cancel
from ...errors import GenerationCancelled, ServerError

log = logging.getLogger(__name__)

#: How often a waiting caller looks at its abandonment flag (seconds).
_POLL = 0.05


class ServerClient:
    """Requests to one OpenAI-compatible server.

    base_url: the API root, e.g. ``http://127.0.0.1:8000/v1`` (vLLM's tokenizer and health routes sit beside it,
    at the server root). timeout: seconds one try may take. retries: further tries of a transient fault.
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0, retries: int = 2,
                 backoff: float = 0.5, max_connections: int = 64) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ServerError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, not {base_url!r}.")
        if timeout <= 0 or retries < 0:
            raise ServerError(f"Invalid server settings: timeout={timeout} must be > 0 and retries={retries} >= 0.")
        self.base_url = base_url.rstrip("/")
        self.root_url = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"rain-http {self.base_url}", daemon=True)
        self._thread.start()
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)

        async def make() -> httpx.AsyncClient:
            return httpx.AsyncClient(headers=headers, limits=limits, timeout=httpx.Timeout(self.timeout))

        self._client = asyncio.run_coroutine_threadsafe(make(), self._loop).result()

    # ------------------------------------------------------------------------------------------ public
    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST one JSON body to ``path`` (see `url`) and return the decoded answer."""
        return self.post_many(path, [body])[0]

    def post_many(self, path: str, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST every body at once and wait for all the answers (in order). The first failure cancels the rest."""
        return self._wait([self._submit("POST", path, body) for body in bodies])

    def get(self, path: str) -> dict[str, Any]:
        return self._wait([self._submit("GET", path, None)])[0]

    def url(self, path: str) -> str:
        """``/v1/...`` routes are given relative (``/completions``); server-root routes start with ``//``
        (``//tokenize``), a convention of this class only."""
        return self.root_url + path[1:] if path.startswith("//") else self.base_url + path

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------------------------------ waiting
    def _submit(self, method: str, path: str, body: dict[str, Any] | None) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(self._request(method, path, body), self._loop)

    def _wait(self, futures: list[concurrent.futures.Future]) -> list[dict[str, Any]]:
        try:
            pending = set(futures)
            while pending:
                done, pending = concurrent.futures.wait(pending, timeout=_POLL,
                                                        return_when=concurrent.futures.FIRST_EXCEPTION)
                if any(f.exception() is not None for f in done if not f.cancelled()):
                    break
                if cancel.abandoned():
                    raise GenerationCancelled("The request was abandoned; its outstanding server requests were "
                                              "cancelled.")
            return [f.result() for f in futures]
        finally:
            for future in futures:
                future.cancel()  # no-op for finished ones; closes the connection of a running one

    # ------------------------------------------------------------------------------------------ one request
    async def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        url = self.url(path)
        cause = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = await self._client.request(method, url, json=body, timeout=self.timeout)
            except httpx.TimeoutException:
                cause = f"no answer within {self.timeout:g} s (timeout)"
                continue
            except httpx.ConnectError as exc:
                cause = f"cannot connect ({_reason(exc)}); is the server running and is the port right?"
                continue
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                cause = f"the connection was dropped mid-request ({_reason(exc)})"
                continue
            if response.status_code >= 500:
                cause = f"server error HTTP {response.status_code}: {_message(response)}"
                continue
            if response.status_code >= 400:
                raise ServerError(f"{url} refused the request (HTTP {response.status_code}): {_message(response)}")
            try:
                return response.json()
            except json.JSONDecodeError:
                raise ServerError(f"{url} answered HTTP {response.status_code} with a body that is not JSON: "
                                  f"{response.text[:200]!r}") from None
        tries = self.retries + 1
        raise ServerError(f"{url}: {cause} (after {tries} tr{'y' if tries == 1 else 'ies'}).")


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _message(response: httpx.Response) -> str:
    """The server's own error message (OpenAI-style ``{"error": {"message": ...}}``, FastAPI's ``detail``)."""
    try:
        data = response.json()
    except json.JSONDecodeError:
        return response.text[:300] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            return str(error.get("message", error))
        if error is not None:
            return str(error)
    return json.dumps(data)[:300]


__all__ = ["ServerClient"]
