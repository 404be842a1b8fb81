"""Products made at run time: `POST /v2/product` for rows that give a URL or details, not an id.

A product is known by its *source*: `url:<url>` for a product page, or `details:<sha256>` of the
name, description, audience and image URLs. The state's `products` table maps a source to the
product id the API returned, so each product is created once, across runs and whatever number of
rows (or jobs) share it. The create goes through the same POST limiter as the videos.

Product creation is free (reference §6.4), so unlike a video a lost answer costs no credit: the
worst case of a crash between the answer and the state write is one duplicate product.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from typing import Any

from batch import untrusted
from batch.errors import AccountError, ApiError
from batch.joggai.client import ApiOutcome, JoggClient
from batch.joggai.ratelimit import SlidingWindowLimiter
from batch.payload import ProductDetails, ResolvedFields, fields_from_json
from batch.store import Job, StateStore


class ProductError(ApiError):
    """`POST /v2/product` did not give a product id; `outcome.kind` says whether to try again."""

    def __init__(self, message: str, outcome: ApiOutcome) -> None:
        super().__init__(message, code=outcome.code, http_status=outcome.http_status)
        self.outcome = outcome


# One lock per product source and state store: two jobs of the same product in flight at once
# must not both find it missing and both create it.
_locks: weakref.WeakKeyDictionary[StateStore, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()


def product_source(fields: ResolvedFields) -> str | None:
    """The key of the product a row needs created; None when it names a product_id (or none)."""
    if fields.product_id is not None or fields.product is None:
        return None
    product = _details(fields.product)
    if product.url is not None:
        return f"url:{product.url}"
    details = [product.name, product.description, product.target_audience, *product.image_urls]
    encoded = json.dumps(details, ensure_ascii=False, separators=(",", ":"))
    return "details:" + hashlib.sha256(encoded.encode()).hexdigest()


def product_body(product: ProductDetails) -> dict[str, Any]:
    """The `POST /v2/product` body: url and/or details, images as media of type 1."""
    body: dict[str, Any] = {
        "url": product.url,
        "name": product.name,
        "description": product.description,
        "target_audience": product.target_audience,
    }
    if product.image_urls:
        body["media"] = [{"type": 1, "url": url} for url in product.image_urls]
    return {name: value for name, value in body.items() if value is not None}


async def ensure_product(
    job: Job, client: JoggClient, limiter: SlidingWindowLimiter | None, state: StateStore
) -> str:
    """The product id for `job`'s video, creating the product first when none exists yet.

    Returns at once for a job with a product id (its own or one set earlier). Otherwise the id
    recorded for the job's product source is used, or the product is created (one rate-limited
    POST) and recorded. Raises `AccountError` when the key is refused, `ProductError` for any
    other failure: retry it when `outcome.kind` is `retryable`, `not_sent` or `unknown` (a
    duplicate product is free); the row has failed when it is `permanent`.
    """
    if job.product_id:
        return job.product_id
    fields = fields_from_json(job.fields)
    if fields.product_id is not None:
        return fields.product_id
    source = product_source(fields)
    if source is None or fields.product is None:
        raise ProductError(
            f"row key {job.row_key}: no product_id and no product to create",
            ApiOutcome(kind="permanent", message="no product"),
        )
    lock = _locks.setdefault(state, {}).setdefault(source, asyncio.Lock())
    async with lock:
        product_id = state.product_for(source)
        if product_id is None:
            product_id = await _create(_details(fields.product), client, limiter, job.row_key)
            state.record_product(source, product_id)
    state.set_job_product(job.id, product_id)
    return product_id


async def _create(
    product: ProductDetails,
    client: JoggClient,
    limiter: SlidingWindowLimiter | None,
    row_key: str | None,
) -> str:
    body = product_body(product)
    if limiter is None:
        outcome = await client.create_product(body)
    else:
        async with limiter.slot() as slot:
            outcome = await client.create_product(body)
            slot.observe(
                outcome.retry_after,
                outcome.rate_remaining,
                outcome.rate_limited,
                answered=outcome.answered,
            )
    what = product.url or product.name or "details"
    if outcome.kind == "account":
        raise AccountError(
            f"the API refused the account creating product {what!r}: {outcome}",
            code=outcome.code,
            http_status=outcome.http_status,
        )
    given = (outcome.data or {}).get("product_id") if outcome.kind == "ok" else None
    # Sent in the video's request, kept in the ledger, written to the results: held to the
    # shape of an id (no escape sequence, no 20,000 characters), as a video id is.
    product_id = untrusted.video_id(given)
    if product_id is not None:
        return product_id
    if outcome.kind == "ok":
        outcome = ApiOutcome(
            kind="unknown",
            code=outcome.code,
            message=(
                "accepted, but no product_id returned"
                if given in (None, "")
                else "accepted, but what it returned as the product_id is no id"
            ),
            http_status=outcome.http_status,
        )
    raise ProductError(f"row key {row_key}: cannot create product {what!r}: {outcome}", outcome)


def _details(product: ProductDetails | list[Any]) -> ProductDetails:
    """Job fields come back from the state as JSON, where the details are a plain list."""
    if isinstance(product, ProductDetails):
        return product
    url, name, description, audience, images = product
    return ProductDetails(url, name, description, audience, tuple(images))
