"""`--sandbox`: run against a local JoggAI sandbox started in this process, no account needed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from batch.config import Secret
from batch.rates import RateLimit
from batch.sandbox import SandboxConfig, running_sandbox

log = logging.getLogger(__name__)
# The sandbox narrates every request; in embedded mode only its warnings matter to the user.
logging.getLogger("batch.sandbox").setLevel(logging.WARNING)

# Fast enough for a demo of ~50 rows in seconds; the same limit on both sides, as with JoggAI.
DEMO_RATE = RateLimit(300, 60.0)
DEMO_KEY = Secret("sk-sandbox")


@contextmanager
def embedded_sandbox() -> Iterator[str]:
    """Starts the sandbox on a free loopback port; yields its base URL."""
    with running_sandbox(SandboxConfig(rate_limit=DEMO_RATE, render_seconds=5.0)) as url:
        log.warning(
            "using the embedded sandbox at %s (no real videos, no credits spent); "
            "demo rate limit %s on both sides instead of JoggAI's 20/min",
            url,
            DEMO_RATE,
        )
        yield url
