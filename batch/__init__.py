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
    from batch.version import __version__

# The modules the public names come from (as imported above for type checkers).
_HOMES = (
    "batch.api",
    "batch.config",
    "batch.embedded",
    "batch.errors",
    "batch.follow.polling",
    "batch.runner",
    "batch.version",  # package metadata: 24 ms the console script does not wait for
)

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
    if name in __all__:
        for home in _HOMES:
            module = importlib.import_module(home)
            if hasattr(module, name):
                value = getattr(module, name)
                globals()[name] = value  # found once: later uses are plain attribute reads
                return value
    raise AttributeError(f"module 'batch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
