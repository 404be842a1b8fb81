"""The local JoggAI v2 sandbox: a Starlette app that behaves like the real API, faults included.

It owns the fake API surface (`/v2/...`), its seeded catalogs, its credit ledger and rate limit,
fault injection, webhook delivery, and the inspection routes below. It imports nothing from the
client side of jogg-batch.

Library use::

    from batch.sandbox import SandboxConfig, create_app, running_sandbox

    app = create_app(SandboxConfig(seed=7))          # in-process, e.g. httpx.ASGITransport(app=app)
    with running_sandbox(SandboxConfig()) as url:     # real loopback socket, background thread
        ...                                           # url == "http://127.0.0.1:54321"

Endpoints (envelope `{rid, code, msg, data}`): `POST /v2/create_video_from_product`,
`POST /v2/product`, `GET /v2/product_video/{id}`, `GET /v2/product_videos`,
`GET /v2/avatars/public`, `GET /v2/avatars/custom`, `GET /v2/voices`, `GET /v2/musics`,
`GET /v2/visual_styles?aspect_ratio=`, `GET /v2/user/whoami`, `GET /v2/user/remaining_quota`.
Business errors come with HTTP 200 unless `http_status_codes` maps them (10105 -> 401,
18025 -> 403, 18020 -> 402, 40000 -> 400, 10104 -> 404, 429 -> 429, 50000 -> 500).
Order of checks on a POST, and where each fault acts: see `batch/sandbox/app.py` and `faults.py`.

Inspection, outside `/v2/` and without an API key:

- `GET /_sandbox/submissions` (settles due late commits first) ->
  `{"submissions": [{"video_id", "product_id", "name", "payload", "received_at", "created_at",
  "fault"}, ...], "pending": [{"product_id", "name", "received_at", "commit_at"}, ...],
  "products": [ProductInfo created through POST /v2/product, ...],
  "counts": {"rejected": {"40000": n, "10104": n, ...}, "rate_limited": n,
  "faulted": {"reset": n, "stall": n, "bad_gateway": n, "fail": n, "commit_then_error": n,
  "late_commit": n}},
  "credits_left": n, "webhooks": [{"video_id", "event_id", "event", "url", "attempts",
  "delivered"}, ...]}`.
  `submissions` lists every accepted (charged) create in commit order, one entry per charge:
  stalled, commit-then-error and late-committed ones included, so counting entries per
  `[jb-...]` tag in `name` counts what each distinct request cost. `name` is the
  `video_spec.name` exactly as sent (empty when absent), whatever `listing_title` shows;
  `payload` is the whole body as sent. `received_at` (request arrival) and `created_at` (commit,
  later than arrival only for a late commit; the API's `created_at` is its integer part) are
  unix seconds (float) from the sandbox clock. `fault` is `null`, `"stall"`,
  `"commit_then_error"` or `"late_commit"`: what hit that create after it was committed.
  `pending` lists late creates validated but not yet committed (not charged yet; each becomes a
  submission at `commit_at`, whether or not its client is still connected): a test that counts
  charges waits until `pending` is empty. `attempts` lists each webhook try's HTTP status or
  error.
- `POST /_sandbox/reset` clears submissions, API-created products, counts, webhook log and rate
  windows, and restores the credits to the configured amount.
- `GET /_sandbox/media/{video_id}.mp4` and `.jpg`: deterministic bytes for completed renders
  (these are the `video_url`/`cover_url` the API returns), with `Range` support.

All keys share one account: one credit ledger and one video list.
"""

from batch.sandbox.app import create_app
from batch.sandbox.config import SandboxConfig
from batch.sandbox.server import running_sandbox

__all__ = ["SandboxConfig", "create_app", "running_sandbox"]
