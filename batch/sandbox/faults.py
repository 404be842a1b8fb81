"""Fault injection: which fault hits a POST, and how a connection is dropped without an answer.

One seeded draw per POST picks at most one fault, so a failing test replays with the same seed:
the unit interval is cut into [reset | bad gateway | fail | stall | none], in that order, with
the configured rates as widths. Where each fault acts in the request (see app.py):

- reset: after the key, permission and rate-limit checks, before the body is read: nothing is
  recorded or charged, the TCP connection is aborted (the POST still counts in the rate window,
  as the server saw it).
- bad_gateway: same place; HTTP 502 with an HTML body, as a proxy in front of the API would send.
- fail: same place; code 50000, nothing recorded or charged.
- stall: only after the request was validated, recorded and charged (commit-then-stall): the
  answer is withheld `stall_seconds`, then the connection is aborted.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import MutableMapping
from typing import Any

from batch.sandbox.config import SandboxConfig

TRANSPORT_KEY = "sandbox.transport"


class Fault(enum.Enum):
    RESET = "reset"
    BAD_GATEWAY = "bad_gateway"
    FAIL = "fail"
    STALL = "stall"


class FaultDraw:
    def __init__(self, config: SandboxConfig) -> None:
        self._rng = random.Random(config.seed)
        self._bands = (
            (Fault.RESET, config.reset_rate),
            (Fault.BAD_GATEWAY, config.bad_gateway_rate),
            (Fault.FAIL, config.fail_rate),
            (Fault.STALL, config.stall_rate),
        )

    def next(self) -> Fault | None:
        point = self._rng.random()
        edge = 0.0
        for fault, rate in self._bands:
            edge += rate
            if point < edge:
                return fault
        return None


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
