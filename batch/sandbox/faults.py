"""Fault injection: which fault hits a POST, and how a connection is dropped without an answer.

One seeded draw per POST picks at most one fault, so a failing test replays with the same seed:
the unit interval is cut into
[reset | bad gateway | fail | stall | commit then error | late commit | none], in that order,
with the configured rates as widths (new bands go last, so an old seed keeps its old faults).
Where each fault acts in the request (see app.py):

- reset: after the key, permission and rate-limit checks, before the body is read: nothing is
  recorded or charged, the TCP connection is aborted (the POST still counts in the rate window,
  as the server saw it).
- bad_gateway: same place; HTTP 502 with an HTML body, as a proxy in front of the API would send.
- fail: same place; code 50000, nothing recorded or charged.
- stall: only after the request was validated, recorded and charged (commit-then-stall): the
  answer is withheld `stall_seconds`, then the connection is aborted.
- commit_then_error (create_video_from_product only): the request is validated, recorded and
  charged, then answered with an error instead of the video id, one of `CommitError` picked by
  its own seeded RNG: code 50000 (HTTP 200, or 500 with `http_status_codes`), HTTP 500 with an
  HTML page, HTTP 502 with an HTML page, or HTTP 503 with an empty body.
- late_commit (create_video_from_product only): the request is validated (its 40000, 10104 and
  18020 answers are immediate) but not committed; the answer is withheld and the video is
  recorded and charged `late_commit_seconds` after the request arrived (its created_at is that
  moment), whether or not the client is still there. The commit belongs to the store, not to the
  request (see store.Store.settle): a client that timed out and hung up is charged all the same.
  A client still connected then gets the usual answer (or 18020 if the credits ran out meanwhile).

A POST /v2/product that draws commit_then_error or late_commit is answered normally (products
cost nothing, so those faults have nothing to say there); the draw is still spent, so the
sequence of faults depends only on the sequence of POSTs.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import MutableMapping
from typing import Any, Final

from batch.sandbox.config import SandboxConfig

TRANSPORT_KEY = "sandbox.transport"


class Fault(enum.Enum):
    RESET = "reset"
    BAD_GATEWAY = "bad_gateway"
    FAIL = "fail"
    STALL = "stall"
    COMMIT_THEN_ERROR = "commit_then_error"
    LATE_COMMIT = "late_commit"


BEFORE_BODY: Final = frozenset({Fault.RESET, Fault.BAD_GATEWAY, Fault.FAIL})
VIDEO_ONLY: Final = frozenset({Fault.COMMIT_THEN_ERROR, Fault.LATE_COMMIT})


class CommitError(enum.Enum):
    """The answers a commit_then_error fault picks from, with equal chances."""

    CODE_50000 = "code_50000"
    HTML_500 = "html_500"
    HTML_502 = "html_502"
    EMPTY_503 = "empty_503"


class FaultDraw:
    def __init__(self, config: SandboxConfig) -> None:
        self._rng = random.Random(config.seed)
        # A separate stream, so choosing the error does not shift the next POST's draw.
        self._errors = random.Random(f"{config.seed}:commit_errors")
        self._bands = (
            (Fault.RESET, config.reset_rate),
            (Fault.BAD_GATEWAY, config.bad_gateway_rate),
            (Fault.FAIL, config.fail_rate),
            (Fault.STALL, config.stall_rate),
            (Fault.COMMIT_THEN_ERROR, config.commit_then_error_rate),
            (Fault.LATE_COMMIT, config.late_commit_rate),
        )

    def next(self) -> Fault | None:
        point = self._rng.random()
        edge = 0.0
        for fault, rate in self._bands:
            edge += rate
            if point < edge:
                return fault
        return None

    def commit_error(self) -> CommitError:
        return self._errors.choice(list(CommitError))


class ConnectionDropped(ConnectionResetError):
    """Raised where no socket can be aborted (in-process ASGI): the caller still gets no answer."""


async def drop_connection(scope: MutableMapping[str, Any]) -> None:
    """Abort the TCP connection under this request without writing a byte.

    uvicorn's ASGI `send` is a bound method of its request cycle, which holds the asyncio
    transport; the app's outermost layer stores it in the scope (see app.SandboxApp).
    """
    transport = scope.get(TRANSPORT_KEY)
    if transport is None:
        raise ConnectionDropped("sandbox dropped the connection (fault injection)")
    transport.abort()
    # Let connection_lost run, so uvicorn sees a disconnected client and writes no 500 after us.
    for _ in range(3):
        await asyncio.sleep(0)
