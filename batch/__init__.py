"""jogg-batch: product catalogs into JoggAI videos, rate-limited, resumable, never paid twice.

The Python API (an example in the README, run by the test suite)::

    config = batch.configure("catalog.csv", batch.Overrides(max_videos=100))
    summary = batch.run(config, wait=1800)   # or `await batch.run_async(...)` inside a loop

Everything named in `__all__` is the public API; the modules behind it may change.

The names are imported when first used (PEP 562): the command line imports only the modules its
command needs, so that a signal in its first half second finds its handlers already set
(`batch.console`), not pandas half imported.
"""

import importlib
import typing

from batch.version import __version__

if typing.TYPE_CHECKING:
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

# Each public name -> the module it comes from.
_HOMES = {
    **dict.fromkeys(
        [
            "Validation",
            "configure",
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
        ],
        "batch.api",
    ),
    **dict.fromkeys(["Overrides", "RunConfig", "Settings", "TrackConfig"], "batch.config"),
    **dict.fromkeys(["Sandbox", "local_sandbox"], "batch.embedded"),
    **dict.fromkeys(["BatchError", "ExitCode"], "batch.errors"),
    "PollSummary": "batch.follow.polling",
    "RunSummary": "batch.runner",
}

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


def __getattr__(name: str) -> typing.Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'batch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # found once: later uses are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
