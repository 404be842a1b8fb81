"""`--sandbox`: run against a local JoggAI sandbox started in this process, no account needed."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from batch.config import Secret
from batch.joggai.quota import RateLimit

log = logging.getLogger(__name__)

# Fast enough for a demo of ~50 rows in seconds; the same limit on both sides, as with JoggAI.
DEMO_RATE = RateLimit(300, 60.0)
DEMO_KEY = Secret("sk-sandbox")


@dataclass(frozen=True)
class Sandbox:
    """A running embedded sandbox: where it listens, the key it accepts, and a ledger that lives
    as long as it does (its account ends with it, so a run's state must not outlive it)."""

    url: str
    ledger: Path
    api_key: Secret = DEMO_KEY
    rate: RateLimit = DEMO_RATE


@contextmanager
def embedded_sandbox() -> Iterator[str]:
    """Starts the sandbox on a free loopback port; yields its base URL."""
    # Here, not at the top: the server and its web framework would add about 0.15 s to the
    # start of every run, a run against JoggAI's API included.
    from batch.sandbox import SandboxConfig, running_sandbox

    # The sandbox narrates every request; embedded, only its warnings matter to the user. Set
    # while it runs and put back after: importing the library changes no logger.
    narrator = logging.getLogger("batch.sandbox")
    level = narrator.level
    narrator.setLevel(logging.WARNING)
    try:
        with running_sandbox(SandboxConfig(rate_limit=DEMO_RATE, render_seconds=5.0)) as url:
            log.warning(
                "using the embedded sandbox at %s (no real videos, no credits spent); "
                "demo rate limit %s on both sides instead of JoggAI's 20/min",
                url,
                DEMO_RATE,
            )
            yield url
    finally:
        narrator.setLevel(level)


@contextmanager
def local_sandbox() -> Iterator[Sandbox]:
    """`with batch.local_sandbox() as box:` a local fake JoggAI, for `configure(sandbox=box)`."""
    with (
        tempfile.TemporaryDirectory(prefix="jogg-sandbox-") as folder,
        embedded_sandbox() as url,
    ):
        yield Sandbox(url, Path(folder) / "ledger.db")
