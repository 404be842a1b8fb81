"""`jogg-batch sandbox`: serve the local JoggAI v2 sandbox in the foreground.

The first stdout line is exactly `sandbox listening on http://HOST:PORT` (flushed), so a test or
a benchmark that spawns the command can read the URL; logs go to stderr.
"""

from __future__ import annotations

from typing import Any

import click

from batch.cli.common import listening_options, logging_options, reports_errors
from batch.joggai.quota import RateLimit, parse_rate
from batch.sandbox.config import SandboxConfig, parse_latency, parse_listing_title
from batch.sandbox.server import bind_socket, serve, url_of


def _rate(ctx: click.Context, param: click.Parameter, value: str) -> RateLimit | None:
    try:
        return parse_rate(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _latency(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        return parse_latency(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _listing_title(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_listing_title(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    return value


PROBABILITY = click.FloatRange(0.0, 1.0)


@click.command()
@listening_options
@click.option(
    "--api-key", "api_keys", multiple=True, help="Accepted key (repeatable). [default: sk-sandbox]"
)
@click.option(
    "--no-permission-key",
    "no_permission_keys",
    multiple=True,
    help="Key answered with 18025 (repeatable).",
)
@click.option(
    "--rate-limit",
    callback=_rate,
    default="20/min",
    show_default=True,
    help="POSTs per key: N/s, N/min, N/h or none.",
)
@click.option("--credits", default=1000, show_default=True, type=click.IntRange(0))
@click.option("--seed", default=0, show_default=True, help="Seeds render failures and faults.")
@click.option("--render-seconds", default=2.0, show_default=True, type=click.FloatRange(0))
@click.option("--render-failure-rate", default=0.0, show_default=True, type=PROBABILITY)
@click.option(
    "--fail-rate", default=0.0, show_default=True, type=PROBABILITY, help="POSTs answered 50000."
)
@click.option(
    "--bad-gateway-rate",
    default=0.0,
    show_default=True,
    type=PROBABILITY,
    help="POSTs answered HTTP 502 (HTML).",
)
@click.option(
    "--reset-rate",
    default=0.0,
    show_default=True,
    type=PROBABILITY,
    help="POSTs whose connection is dropped unprocessed.",
)
@click.option(
    "--stall-rate",
    default=0.0,
    show_default=True,
    type=PROBABILITY,
    help="POSTs committed and charged, then never answered.",
)
@click.option("--stall-seconds", default=30.0, show_default=True, type=click.FloatRange(0))
@click.option(
    "--commit-then-error-rate",
    default=0.0,
    show_default=True,
    type=PROBABILITY,
    help="Creates committed and charged, then answered 50000 or HTTP 500/502/503.",
)
@click.option(
    "--late-commit-rate",
    default=0.0,
    show_default=True,
    type=PROBABILITY,
    help="Creates committed and charged only --late-commit-seconds after they arrive.",
)
@click.option("--late-commit-seconds", default=5.0, show_default=True, type=click.FloatRange(0))
@click.option(
    "--listing-lag-seconds",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="GET /v2/product_videos hides videos younger than this.",
)
@click.option(
    "--listing-title",
    callback=_listing_title,
    default="echo",
    show_default=True,
    help="Video titles: echo (the sent name), cut:N (its first N characters) or product-name.",
)
@click.option(
    "--latency-ms",
    callback=_latency,
    default="0-0",
    show_default=True,
    help="MIN-MAX added to every /v2 request.",
)
@click.option(
    "--product-delay",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds POST /v2/product takes.",
)
@click.option(
    "--http-status-codes",
    is_flag=True,
    help="Send 401/402/403/400/404/429/500 instead of HTTP 200 with errors.",
)
@click.option(
    "--webhook-secret",
    default="whsec_sandbox",
    show_default=True,
    help="HMAC key for webhook signatures.",
)
@click.option("--webhook-duplicates", is_flag=True, help="Deliver every webhook event twice.")
@logging_options
@reports_errors
def sandbox(host: str, port: int, api_keys: tuple[str, ...], rate_limit: RateLimit | None,
            latency_ms: tuple[int, int], product_delay: float, **knobs: Any) -> None:  # fmt: skip
    """Serve the local JoggAI v2 sandbox (fake API, credits, rate limit, faults, webhooks).

    \b
    Example:
      jogg-batch sandbox --port 8787 --fail-rate 0.1 --stall-rate 0.05 --seed 7
    """
    config = SandboxConfig(
        api_keys=api_keys or SandboxConfig.api_keys,
        rate_limit=rate_limit,
        latency_ms=latency_ms,
        product_delay_seconds=product_delay,
        **knobs,
    )
    sock = bind_socket(host, port)
    click.echo(f"sandbox listening on {url_of(sock)}")
    serve(config, sock)
