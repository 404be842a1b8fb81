"""Every knob of the sandbox in one frozen object, checked once when it is built."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from batch.errors import ConfigError
from batch.joggai.quota import RateLimit

DEFAULT_API_KEY = "sk-sandbox"
DEFAULT_RATE_LIMIT = RateLimit(20, 60.0)  # JoggAI's documented 20 POSTs per minute per key
DEFAULT_WEBHOOK_SECRET = "whsec_sandbox"  # noqa: S105 - a published sandbox default, not a credential


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox behaves; the defaults are a well-behaved, fast JoggAI account.

    Fault rates are probabilities per POST and together must not exceed 1 (one draw decides
    which fault, if any, hits a request; see faults.py). `listing_title` says what the `title`
    of a video shows: `echo` (the sent `video_spec.name`), `cut:N` (its first N characters) or
    `product-name` (the product's name). `clock` returns unix seconds; tests inject a fake one.
    """

    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    no_permission_keys: tuple[str, ...] = ()
    rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT
    credits: int = 1000
    seed: int = 0
    render_seconds: float = 2.0
    render_failure_rate: float = 0.0
    fail_rate: float = 0.0
    bad_gateway_rate: float = 0.0
    reset_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 30.0
    commit_then_error_rate: float = 0.0
    late_commit_rate: float = 0.0
    late_commit_seconds: float = 5.0
    listing_lag_seconds: float = 0.0
    listing_title: str = "echo"
    latency_ms: tuple[int, int] = (0, 0)
    product_delay_seconds: float = 0.0
    http_status_codes: bool = False
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    webhook_retries: int = 3
    webhook_retry_seconds: float = 5.0
    webhook_duplicates: bool = False
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        rates = {
            "render_failure_rate": self.render_failure_rate,
            "fail_rate": self.fail_rate,
            "bad_gateway_rate": self.bad_gateway_rate,
            "reset_rate": self.reset_rate,
            "stall_rate": self.stall_rate,
            "commit_then_error_rate": self.commit_then_error_rate,
            "late_commit_rate": self.late_commit_rate,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"sandbox {name} must be between 0 and 1, got {rate}")
        faults = sum(rate for name, rate in rates.items() if name != "render_failure_rate")
        if faults > 1.0 + 1e-9:  # 0.1 + 0.2 + 0.7 must pass despite float rounding
            raise ConfigError(f"sandbox fault rates add up to {faults:g}; their sum must be <= 1")
        low, high = self.latency_ms
        if not 0 <= low <= high:
            raise ConfigError(f"sandbox latency_ms needs 0 <= MIN <= MAX, got {low}-{high}")
        for name, value in {
            "credits": self.credits,
            "render_seconds": self.render_seconds,
            "stall_seconds": self.stall_seconds,
            "late_commit_seconds": self.late_commit_seconds,
            "listing_lag_seconds": self.listing_lag_seconds,
            "product_delay_seconds": self.product_delay_seconds,
            "webhook_retries": self.webhook_retries,
            "webhook_retry_seconds": self.webhook_retry_seconds,
        }.items():
            if value < 0:
                raise ConfigError(f"sandbox {name} must not be negative, got {value}")
        if not self.api_keys:
            raise ConfigError("the sandbox needs at least one API key")
        try:
            parse_listing_title(self.listing_title)
        except ValueError as error:
            raise ConfigError(f"sandbox listing_title: {error}") from None


@dataclass(frozen=True)
class ListingTitle:
    """What a video's `title` shows; built by `parse_listing_title`."""

    kind: Literal["echo", "cut", "product-name"]
    chars: int = 0  # for "cut"

    def show(self, name: str, product_name: str) -> str:
        if self.kind == "product-name":
            return product_name
        if self.kind == "cut":
            return name[: self.chars]
        return name


def parse_listing_title(text: str) -> ListingTitle:
    """`"echo"`, `"cut:30"` or `"product-name"` -> ListingTitle. Raises ValueError otherwise."""
    if text in ("echo", "product-name"):
        return ListingTitle("echo" if text == "echo" else "product-name")
    prefix, _, chars = text.partition(":")
    if prefix == "cut" and chars.isascii() and chars.isdigit() and int(chars) >= 1:
        return ListingTitle("cut", int(chars))
    raise ValueError(
        f"{text!r} is not a listing title; write echo, cut:N (N >= 1 characters) or product-name"
    )


def parse_latency(text: str) -> tuple[int, int]:
    """`"50-200"` -> (50, 200); `"100"` -> (100, 100). Raises ValueError otherwise."""
    low, sep, high = text.partition("-")
    try:
        bounds = (int(low), int(high if sep else low))
    except ValueError:
        raise ValueError(f"{text!r} is not a latency; write MIN-MAX in milliseconds") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise ValueError(f"{text!r} is not a latency; MIN-MAX needs 0 <= MIN <= MAX")
    return bounds
