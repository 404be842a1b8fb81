"""jogg-batch: product catalogs into JoggAI videos, rate-limited, resumable, never paid twice.

The Python API (an example in the README, run by the test suite)::

    config = batch.configure("catalog.csv", batch.Overrides(max_videos=100))
    summary = batch.run(config, wait=1800)   # or `await batch.run_async(...)` inside a loop

Everything named in `__all__` is the public API; the modules behind it may change.
"""

from batch.api import (
    Validation,
    configure,
    plan,
    plan_async,
    retry,
    retry_async,
    run,
    run_async,
    track,
    track_async,
    track_config,
    validate,
    validate_async,
)
from batch.config import Overrides, RunConfig, Settings, TrackConfig
from batch.embedded import Sandbox, local_sandbox
from batch.errors import BatchError, ExitCode
from batch.follow.polling import PollSummary
from batch.runner import RunSummary
from batch.version import __version__

__all__ = [
    "BatchError",
    "ExitCode",
    "Overrides",
    "PollSummary",
    "RunConfig",
    "RunSummary",
    "Sandbox",
    "Settings",
    "TrackConfig",
    "Validation",
    "__version__",
    "configure",
    "local_sandbox",
    "plan",
    "plan_async",
    "retry",
    "retry_async",
    "run",
    "run_async",
    "track",
    "track_async",
    "track_config",
    "validate",
    "validate_async",
]
