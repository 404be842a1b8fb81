"""`jogg-batch listen`: receive JoggAI webhooks and record final video statuses in the state.

How to expose the listener over HTTPS and register it with JoggAI: see `batch/webhook.py`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
import uvicorn

from batch.cli.common import logging_options, reports_errors
from batch.errors import StateError
from batch.state import StateStore
from batch.status import VideoStatusSink
from batch.webhook import create_listener_app, load_secret

log = logging.getLogger(__name__)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--state",
    "state_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The state database the runs write.",
)
@click.option(
    "--secret-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding the endpoint secret (default: $JOGG_WEBHOOK_SECRET).",
)
@logging_options
@reports_errors
def listen(host: str, port: int, state_path: Path, secret_file: Path | None) -> None:
    """Receive JoggAI webhooks (POST / or /webhook) and update the state.

    Plain HTTP: put it behind an HTTPS reverse proxy or tunnel, then register that URL with
    POST /v2/endpoint for generated_product_video_success and _failed.
    """
    secret = load_secret(secret_file)
    with StateStore(state_path) as store:
        if not isinstance(store, VideoStatusSink):
            raise StateError(f"{state_path}: this state store cannot record video statuses")
        app = create_listener_app(store, secret)
        log.info("listening for webhooks on http://%s:%d/webhook", host, port)
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    stats = app.state.stats
    log.info(
        "webhooks: %d applied, %d duplicates, %d ignored, %d rejected, %d malformed",
        stats.applied,
        stats.duplicates,
        stats.ignored,
        stats.rejected,
        stats.malformed,
    )
