"""Every knob of the sandbox in one frozen object, checked once when it is built."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from batch.errors import ConfigError
from batch.rates import RateLimit

DEFAULT_API_KEY = "sk-sandbox"
DEFAULT_RATE_LIMIT = RateLimit(20, 60.0)  # JoggAI's documented 20 POSTs per minute per key
DEFAULT_WEBHOOK_SECRET = "whsec_sandbox"  # noqa: S105 - a published sandbox default, not a credential


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox behaves; the defaults are a well-behaved, fast JoggAI account.

    Fault rates are probabilities per POST and together must not exceed 1 (one draw decides
    which fault, if any, hits a request). `clock` returns unix seconds; tests inject a fake one.
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
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"sandbox {name} must be between 0 and 1, got {rate}")
        faults = self.fail_rate + self.bad_gateway_rate + self.reset_rate + self.stall_rate
        if faults > 1.0:
            raise ConfigError(f"sandbox fault rates add up to {faults:g}; their sum must be <= 1")
        low, high = self.latency_ms
        if not 0 <= low <= high:
            raise ConfigError(f"sandbox latency_ms needs 0 <= MIN <= MAX, got {low}-{high}")
        for name, value in {
            "credits": self.credits,
            "render_seconds": self.render_seconds,
            "stall_seconds": self.stall_seconds,
            "product_delay_seconds": self.product_delay_seconds,
            "webhook_retries": self.webhook_retries,
            "webhook_retry_seconds": self.webhook_retry_seconds,
        }.items():
            if value < 0:
                raise ConfigError(f"sandbox {name} must not be negative, got {value}")
        if not self.api_keys:
            raise ConfigError("the sandbox needs at least one API key")


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
