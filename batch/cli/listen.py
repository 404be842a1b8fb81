"""`jogg-batch listen`: receive JoggAI webhooks and record final video statuses in the state.

How to expose the listener over HTTPS (and the reverse proxy's own limits) and register it with
JoggAI: see `batch/follow/webhook.py`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from batch.cli.common import (
    STATE,
    config_option,
    listening_options,
    logging_options,
    reports_errors,
)
from batch.config import Overrides, known_api_key, resolve
from batch.errors import StateError
from batch.follow.webhook import (
    DEFAULT_MAX_AGE,
    ListenerLimits,
    WebhookSink,
    create_listener_app,
    listener_server,
    load_secret,
    open_socket,
)
from batch.store import StateStore
from batch.store.backend import StateLocation

log = logging.getLogger(__name__)


@click.command()
@listening_options
@click.option(
    "--state",
    "state_path",
    required=True,
    type=STATE,
    envvar="JOGG_STATE_URL",
    help="The state the runs write: a file or a postgresql:// URL (or JOGG_STATE_URL).",
)
@click.option(
    "--secret-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding the endpoint secret (default: $JOGG_WEBHOOK_SECRET).",
)
@click.option(
    "--max-age",
    default=DEFAULT_MAX_AGE,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds an event's timestamp may lie from now; older (replayed) events are ignored.",
)
@config_option
@logging_options
@reports_errors
def listen(
    host: str,
    port: int,
    state_path: StateLocation,
    secret_file: Path | None,
    max_age: float,
    config_path: Path | None,
) -> None:
    """Receive JoggAI webhooks (POST / or /webhook) and update the state.

    Plain HTTP: put it behind an HTTPS reverse proxy or tunnel, then register that URL with
    POST /v2/endpoint for generated_product_video_success and _failed.

    \b
    Example:
      JOGG_WEBHOOK_SECRET=... jogg-batch listen --port 8080 --state ledger.db
    """
    if isinstance(state_path, Path) and not state_path.is_file():
        raise StateError(f"{state_path}: no state database here; check the path")
    secret = load_secret(secret_file)
    api_key = known_api_key(resolve(Overrides(config_path=config_path)))  # its api.key_file
    limits = ListenerLimits(max_age=max_age)
    with StateStore(state_path) as store:
        if not isinstance(store, WebhookSink):
            raise StateError(f"{state_path}: this state store cannot record video statuses")
        app = create_listener_app(store, secret, limits=limits, api_key=api_key)
        sock = open_socket(host, port)
        bound_host, bound_port = sock.getsockname()[:2]
        log.info("listening for webhooks on http://%s:%d/webhook", bound_host, bound_port)
        listener_server(app, limits).run(sockets=[sock])
    stats = app.state.stats
    log.info(
        "webhooks: %d applied, %d duplicates, %d ignored, %d stale, %d rejected, %d malformed, "
        "%d too large, %d too slow",
        stats.applied,
        stats.duplicates,
        stats.ignored,
        stats.stale,
        stats.rejected,
        stats.malformed,
        stats.too_large,
        stats.too_slow,
    )
