"""REST plumbing shared by the exchange providers: one polite JSON client per upstream host.

Why httpx: the providers page through long histories (Binance returns 1,000 klines per call,
Polygon follows ``next_url`` chains), so reusing one keep-alive connection matters; httpx gives
that, per-phase timeouts and streamed bodies (to cap a response's size) with a small, well-kept,
synchronous API that fits the provider's threads. The vendors' own clients were not used: Binance's
``binance-connector`` and Polygon's ``polygon-api-client`` each add their own retry and paging
policy (neither honours ``Retry-After`` across threads), and we need one policy for both.

Behaviour under failure, for every request made through :class:`RestClient`:

* **Rate limits** - a 429 or 418 answer puts a hold on the client's :class:`RateGate` for the
  ``Retry-After`` seconds (or a growing default when the header is missing); *no* request from any
  thread goes out before the hold ends. A hold longer than ``max_wait`` is not slept through: the
  call raises :class:`~nbfeed.errors.UpstreamError` saying when the upstream allows requests again.
* **Transient failures** - connection errors, timeouts, 5xx answers and malformed JSON are retried
  ``max_retries`` times with exponential backoff, then raised as ``UpstreamError`` /
  ``UpstreamTimeout`` naming the host, path and what went wrong.
* **Other 4xx answers** raise :class:`HttpError` (an ``UpstreamError``) carrying the status and the
  decoded body, for the provider to translate (unknown symbol, bad key, not entitled).
* **Hostile input** - bodies over ``max_bytes`` are refused while streaming; absolute URLs (such as
  Polygon's ``next_url``) are followed only to the configured host, so credentials sent in headers
  never leave for another host.
* **Stopping** - waits are cut short when the ``stop`` event is set (the provider is shutting down).
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import UpstreamError, UpstreamTimeout

DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_RETRY_STATUSES = {500, 502, 503, 504}


class HttpError(UpstreamError):
    """The upstream answered with a 4xx status that retrying cannot fix."""

    def __init__(self, message: str, status: int = 0, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body

    def __reduce__(self):  # keep status and body across the process boundary
        return (type(self), (self.message, self.status, self.body))


class Stopped(UpstreamError):
    """The provider is stopping; the request was abandoned."""


class RateGate:
    """The earliest moment (monotonic clock) the next request to one host may go out.

    Shared by every thread that uses the client, so one thread's 429 holds back all the others.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = 0.0
        self.reason = ""

    def hold(self, seconds: float, reason: str) -> None:
        """No request for the next ``seconds``; holds only ever extend, never shorten."""
        self.hold_until(time.monotonic() + max(0.0, seconds), reason)

    def hold_until(self, deadline: float, reason: str) -> None:
        with self._lock:
            if deadline > self._not_before:
                self._not_before = deadline
                self.reason = reason

    def remaining(self) -> float:
        """Seconds until requests are allowed again (0 when they are)."""
        with self._lock:
            return max(0.0, self._not_before - time.monotonic())

    def wait(self, stop: threading.Event | None, max_wait: float, what: str) -> None:
        """Block until requests are allowed; raise instead when that is more than ``max_wait``."""
        while True:
            left = self.remaining()
            if left <= 0:
                return
            if left > max_wait:
                raise UpstreamError(
                    f"{what}: rate limited ({self.reason}); requests allowed again in "
                    f"{left:.0f} s, which is more than the {max_wait:.0f} s this call may wait")
            if stop is not None:
                if stop.wait(left):
                    raise Stopped(f"{what}: provider stopping")
            else:
                time.sleep(left)


@dataclass
class Reply:
    """A successful JSON answer: the decoded body, the headers and the final URL."""

    data: Any
    headers: httpx.Headers
    url: str


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header: delta seconds or an HTTP date. ``None`` if unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    # A hostile or broken header must not park the provider for years.
    return min(max(seconds, 0.0), 7 * 86400.0)


class RestClient:
    """GET JSON from one upstream host with rate-limit holds, retries and size limits.

    ``before_request(weight)`` runs before each attempt (after the gate allowed it) and may put a
    hold on the gate itself (Binance's used-weight budget does); ``after_response(headers)`` sees
    every answer's headers, including errors.
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        max_wait: float = 90.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backoff: float = 0.5,
        default_retry_after: float = 1.0,
        stop: threading.Event | None = None,
        before_request: Callable[[int], None] | None = None,
        after_response: Callable[[httpx.Headers], None] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{name}: REST base URL must be http(s)://host[:port], got "
                             f"{base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._origin = (parts.scheme, parts.netloc.lower())
        self.name = name
        self.gate = RateGate()
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.max_bytes = max_bytes
        self.backoff = backoff
        self.default_retry_after = default_retry_after
        self.stop = stop
        self.before_request = before_request
        self.after_response = after_response
        self.log = log or logging.getLogger(f"nbfeed.provider.{name}")
        self.requests_sent = 0
        self._client = httpx.Client(headers=dict(headers or {}), timeout=timeout,
                                    follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def url_for(self, path_or_url: str) -> str:
        """Absolute URL for a path, or the URL itself if it points at the configured host."""
        if "://" not in path_or_url:
            return self.base_url + "/" + path_or_url.lstrip("/")
        parts = urlsplit(path_or_url)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            raise UpstreamError(f"{self.name}: refusing to follow a link to another host: "
                                f"{parts.scheme}://{parts.netloc} (configured "
                                f"{self._origin[0]}://{self._origin[1]})")
        return path_or_url

    def get(self, path_or_url: str, params: Mapping[str, Any] | None = None, *,
            weight: int = 1) -> Reply:
        """GET and decode JSON, applying the failure policy in the module docstring."""
        url = self.url_for(path_or_url)
        what = f"{self.name} {urlsplit(url).path}"
        failures = 0
        rate_limited = 0
        while True:
            self.gate.wait(self.stop, self.max_wait, what)
            if self.before_request is not None:
                self.before_request(weight)
                self.gate.wait(self.stop, self.max_wait, what)
            if self.stop is not None and self.stop.is_set():
                raise Stopped(f"{what}: provider stopping")
            attempts = failures + 1
            # Each transient failure below names itself and the error it becomes once the
            # retries are used up; one place then pauses or gives up.
            try:
                status, headers, body, final_url = self._send(url, params)
            except httpx.TimeoutException as exc:
                why = f"timeout ({type(exc).__name__})"
                give_up: UpstreamError = UpstreamTimeout(
                    f"{what}: no answer after {attempts} attempts ({type(exc).__name__})")
            except httpx.TransportError as exc:
                why = f"connection error: {exc}"
                give_up = UpstreamError(f"{what}: cannot reach {self.base_url} after {attempts} "
                                        f"attempts: {exc}")
            else:
                if self.after_response is not None:
                    self.after_response(headers)
                if status in (418, 429):
                    rate_limited += 1
                    self._rate_limited(status, headers, rate_limited, what)
                    continue
                if status in _RETRY_STATUSES:
                    why = f"status {status}"
                    give_up = UpstreamError(f"{what}: upstream error {status} after {attempts} "
                                            f"attempts: {_excerpt(body)}")
                elif status >= 400 or status < 200:
                    raise HttpError(f"{what}: HTTP {status}: {_excerpt(body)}", status,
                                    _decode_or_text(body))
                else:
                    try:
                        return Reply(json.loads(body), headers, final_url)
                    except ValueError:
                        why = "malformed JSON"
                        give_up = UpstreamError(f"{what}: malformed JSON from upstream after "
                                                f"{attempts} attempts: {_excerpt(body)}")
            failures = attempts
            if failures > self.max_retries:
                raise give_up from None
            self._pause(failures, what, why)

    def _rate_limited(self, status: int, headers: httpx.Headers, times: int, what: str) -> None:
        """Hold every request for the answer's ``Retry-After`` (or a growing default); raise
        once the upstream has refused ``max_retries + 1`` times in a row."""
        wait = retry_after_seconds(headers.get("retry-after"))
        if wait is None:
            wait = self.default_retry_after * (2 ** (times - 1))
        label = "IP banned (418)" if status == 418 else "too many requests (429)"
        self.gate.hold(wait, f"{label}, Retry-After {wait:g} s")
        self.log.warning("%s: %s; holding all requests for %.1f s", what, label, wait)
        if times > self.max_retries + 1:
            raise UpstreamError(f"{what}: still rate limited after {times} attempts ({label})")

    def _send(self, url: str, params: Mapping[str, Any] | None
              ) -> tuple[int, httpx.Headers, bytes, str]:
        self.requests_sent += 1
        with self._client.stream("GET", url, params=_clean_params(params)) as resp:
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise UpstreamError(f"{self.name}: response of {declared} bytes from "
                                    f"{urlsplit(url).path} exceeds the {self.max_bytes} byte limit")
            chunks = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise UpstreamError(f"{self.name}: response from {urlsplit(url).path} exceeds "
                                        f"the {self.max_bytes} byte limit")
                chunks.append(chunk)
            return resp.status_code, resp.headers, b"".join(chunks), str(resp.url)

    def _pause(self, failures: int, what: str, why: str) -> None:
        delay = self.backoff * (2 ** (failures - 1)) * (1 + random.random() * 0.25)
        self.log.warning("%s: %s; retry %d/%d in %.1f s", what, why, failures, self.max_retries,
                         delay)
        if self.stop is not None:
            if self.stop.wait(delay):
                raise Stopped(f"{what}: provider stopping")
        else:
            time.sleep(delay)


def _clean_params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    out = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = str(value)
    return out


def _decode_or_text(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body[:2000].decode("utf-8", "replace")


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return repr(text) + ("..." if len(body) > limit else "")
