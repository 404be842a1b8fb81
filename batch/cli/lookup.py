"""`jogg-batch lookup avatars|voices|music|styles`: what the account can use, on stdout."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import click

from batch.cli.common import (
    config_option,
    emit,
    logging_options,
    reports_errors,
    stdout_is_utf8,
)
from batch.config import Overrides, read_api_key, resolve, timeouts
from batch.embedded import Sandbox, local_sandbox
from batch.joggai import lookup as lookups
from batch.vocabulary import ASPECT_RATIOS


@click.command()
@click.argument("what", type=click.Choice(lookups.LOOKUP_KINDS))
@click.option(
    "--aspect-ratio",
    type=click.Choice(ASPECT_RATIOS),
    help="Styles for this aspect ratio only (default: all three); public avatars too.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="How to print the list.",
)
@click.option("--refresh", is_flag=True, help="Ask the API even if the cached list is fresh.")
@config_option
@click.option("--base-url", help="API base URL (default: JOGG_BASE_URL or https://api.jogg.ai).")
@click.option("--sandbox", is_flag=True, help="Ask a local sandbox: no account needed.")
@logging_options
@reports_errors
def lookup(
    what: lookups.LookupKind,
    aspect_ratio: str | None,
    fmt: lookups.OutputFormat,
    refresh: bool,
    config_path: Path | None,
    base_url: str | None,
    sandbox: bool,
) -> None:
    """List the avatars, voices, music or visual styles this account can use.

    Lists are cached for a day under $XDG_CACHE_HOME/jogg-batch (or ~/.cache/jogg-batch);
    --refresh asks the API again. Exit codes: 0 listed, 2 usage or config error, 3 the API
    refused the key.

    \b
    Example:
      jogg-batch lookup styles --aspect-ratio portrait --format csv
    """
    if aspect_ratio is not None and what in ("voices", "music"):
        raise click.UsageError(f"--aspect-ratio applies to avatars and styles, not {what}")
    box: Sandbox | None
    with local_sandbox() if sandbox else nullcontext() as box:
        settings = resolve(
            Overrides(config_path=config_path, base_url=(box and box.url) or base_url)
        )
        config = lookups.LookupConfig(
            base_url=settings.api.base_url,
            api_key=box.api_key if box else read_api_key(settings),
            cache_dir=None if box else lookups.default_cache_dir(),
            refresh=refresh,
            timeouts=timeouts(settings),
        )
        items = lookups.list_items(config, what, aspect_ratio)
    emit(lookups.render(items, fmt, ascii_only=not stdout_is_utf8()))
