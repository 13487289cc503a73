"""POST JSON to a webhook, retrying with capped exponential backoff while it is unavailable.

Connection errors, timeouts, 408, 429 and 5xx are retried (a ``Retry-After`` header replaces the
computed wait); any other answer that is not 2xx is final. Redirects are not followed: a POST
must not be re-sent somewhere else. Webhook URLs carry secrets (Slack's do, in the path), so only
``scheme://host[:port]`` ever appears in a log line or an error message.
"""

from __future__ import annotations

import email.utils
import enum
import http.client
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

__all__ = [
    "Backoff",
    "Delivery",
    "Outcome",
    "WebhookClient",
    "parse_retry_after",
    "redact_url",
    "validate_webhook_url",
    "wait_or_stop",
]

log = logging.getLogger("driftline.webhook")

_RESPONSE_DETAIL_CHARS = 200
_WAIT_SLICE_S = 1.0


def redact_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: what may be logged of a webhook URL."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme or '?'}://{host}" + (f":{port}" if port is not None else "")


def validate_webhook_url(url: str) -> str:
    """Return ``url`` if it is an http(s) URL with a host, else raise ValueError (URL redacted)."""
    try:
        parts = urlsplit(url)
        valid = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and (parts.port is None or parts.port > 0)
        )
    except ValueError:  # a bad port or IPv6 literal
        valid = False
    if not valid:
        raise ValueError(
            f"webhook URL {redact_url(url)}: expected http:// or https:// with a host and a "
            "valid port"
        )
    return url


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date); None if absent.

    ``now`` is the current wall time (epoch seconds), used for the date form. A date in the past
    or a negative number gives 0; anything unparseable gives None (use the normal backoff).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: ``first_s``, twice that, four times, … at most ``max_s``."""

    first_s: float
    max_s: float

    def delay(self, retry: int) -> float:
        """Wait before retry number ``retry`` (1 = the first retry)."""
        if retry < 1:
            raise ValueError("retry counts from 1")
        # 2**60 already exceeds any sensible cap; avoids float overflow for huge counts
        return float(min(self.max_s, self.first_s * 2 ** min(retry - 1, 60)))


def wait_or_stop(
    stop: threading.Event,
    seconds: float,
    tick: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Wait ``seconds``; False as soon as ``stop`` is set (checked at least once a second).

    ``tick(s)``, if given, does the waiting, in slices of at most a second, so the caller keeps
    other duties going (the notifier polls its Kafka consumer to stay in its group).
    """
    deadline = clock() + seconds
    while not stop.is_set():
        left = deadline - clock()
        if left <= 0:
            return True
        if tick is None:
            stop.wait(min(left, _WAIT_SLICE_S))
        else:
            tick(min(left, _WAIT_SLICE_S))
    return False


class Outcome(enum.Enum):
    """How a delivery ended."""

    DELIVERED = "delivered"
    REJECTED = "rejected"  # an answer that retrying cannot change (4xx other than 408/429, 3xx)
    GAVE_UP = "gave_up"  # still failing when the give-up time ran out
    STOPPED = "stopped"  # the stop event was set (or the caller cancelled) before delivery


@dataclass(frozen=True)
class Delivery:
    """Result of :meth:`WebhookClient.post`."""

    outcome: Outcome
    attempts: int
    status: int | None
    detail: str

    @property
    def delivered(self) -> bool:
        """The webhook answered 2xx."""
        return self.outcome is Outcome.DELIVERED


@dataclass(frozen=True)
class _Answer:
    """One POST: the status (None without an HTTP answer), whether to retry, and why."""

    status: int | None
    retryable: bool
    detail: str
    retry_after: float | None = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect as an error instead of following it (urllib would turn POST into GET)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


class WebhookClient:
    """POSTs JSON bodies to one webhook URL with retries.

    Parameters
    ----------
    url
        The webhook; never logged beyond scheme and host.
    timeout_s
        Timeout of one request (connecting, sending, reading the answer).
    backoff
        Waits between attempts.
    max_retry_after_s
        Upper bound on a server's ``Retry-After``.
    give_up_after_s
        Stop retrying once the next attempt would start later than this after the first one;
        None retries until delivered or stopped.
    stop
        Set it to abandon the delivery at the next wait.
    tick
        Does the waiting between attempts in slices of at most a second (see
        :func:`wait_or_stop`); None sleeps.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        backoff: Backoff,
        max_retry_after_s: float,
        give_up_after_s: float | None,
        stop: threading.Event,
        tick: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = validate_webhook_url(url)
        self.redacted = redact_url(url)
        self._timeout_s = timeout_s
        self._backoff = backoff
        self._max_retry_after_s = max_retry_after_s
        self._give_up_after_s = give_up_after_s
        self._stop = stop
        self._tick = tick
        self._clock = clock
        self._wall_clock = wall_clock
        self._opener = urllib.request.build_opener(_NoRedirect)

    def post(self, body: bytes, cancelled: Callable[[], bool] = lambda: False) -> Delivery:
        """POST ``body`` (JSON) until a 2xx, a final error, the give-up time or a stop.

        ``cancelled`` is asked before every attempt; True ends the delivery as STOPPED too.
        """
        started = self._clock()
        attempts = 0
        while True:
            if self._stop.is_set() or cancelled():
                return Delivery(Outcome.STOPPED, attempts, None, "stopped before delivery")
            attempts += 1
            answer = self._attempt(body)
            if answer.status is not None and 200 <= answer.status < 300:
                if attempts > 1:
                    log.info("webhook %s: delivered after %d attempts", self.redacted, attempts)
                return Delivery(Outcome.DELIVERED, attempts, answer.status, answer.detail)
            if not answer.retryable:
                return Delivery(Outcome.REJECTED, attempts, answer.status, answer.detail)
            wait = self._backoff.delay(attempts)
            if answer.retry_after is not None:
                wait = min(answer.retry_after, self._max_retry_after_s)
            give_up = self._give_up_after_s
            if give_up is not None and self._clock() + wait - started > give_up:
                return Delivery(Outcome.GAVE_UP, attempts, answer.status, answer.detail)
            log.warning(
                "webhook %s: attempt %d failed (%s); retrying in %.1f s",
                self.redacted,
                attempts,
                answer.detail,
                wait,
            )
            if not wait_or_stop(self._stop, wait, self._tick, self._clock):
                return Delivery(Outcome.STOPPED, attempts, answer.status, answer.detail)

    def _attempt(self, body: bytes) -> _Answer:
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "driftline-notify"},
        )
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                text = response.read(_RESPONSE_DETAIL_CHARS).decode("utf-8", "replace")
                return _Answer(response.status, False, f"HTTP {response.status} {text}".strip())
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                text = exc.read(_RESPONSE_DETAIL_CHARS).decode("utf-8", "replace").strip()
            except (OSError, http.client.HTTPException):
                text = ""
            finally:
                exc.close()
            detail = f"HTTP {status} {exc.reason}" + (f": {text}" if text else "")
            if 300 <= status < 400:
                detail += " (redirects are not followed)"
            retry_after = parse_retry_after(exc.headers.get("Retry-After"), self._wall_clock())
            return _Answer(status, _retryable_status(status), self._scrub(detail), retry_after)
        except urllib.error.URLError as exc:  # could not connect / send: DNS, refused, TLS
            return _Answer(None, True, self._scrub(f"{type(exc.reason).__name__}: {exc.reason}"))
        except (OSError, http.client.HTTPException) as exc:  # reset, closed early, timed out
            return _Answer(None, True, self._scrub(f"{type(exc).__name__}: {exc}"))

    def _scrub(self, detail: str) -> str:
        """``detail`` with the full URL replaced by its redacted form, should a library quote it."""
        return detail.replace(self._url, self.redacted)
