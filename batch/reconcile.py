"""Finding a render whose create answer was lost, instead of paying for it twice.

Every request carries a short tag in `video_spec.name` (`"Spring promo [jb-7f3a9c2e1b40]"`). When
the answer to a create is lost (timeout, dropped connection, broken body, a crash while
`sending`), the unlimited GET side is asked first: `GET /v2/product_videos`, newest first, back to
a little before the attempt started. A title carrying the tag means the request was accepted:
adopt its `video_id`. No such title in a listing that covers the attempt means it was not:
send again. A listing that fails means nobody can tell: the job is `unknown` and is not resent
unless the user says so (`--resubmit-unknown`).

Assumption: the title in the listing echoes `video_spec.name`. JoggAI's docs do not promise it
(reference §8, §11). If it does not hold for your account, every lost answer ends as `unknown`
(never as a double charge); check those videos in the JoggAI dashboard and resubmit the ones
that are missing with `--resubmit-unknown`.
"""

from __future__ import annotations

import logging

from batch.client import JoggClient, iter_product_videos
from batch.errors import ApiError

log = logging.getLogger(__name__)

# Server and client clocks differ; look this much further back than the attempt's start.
CLOCK_SKEW_SECONDS = 300.0


class Reconciler:
    """Looks up tagged titles in the product-video listing."""

    def __init__(self, client: JoggClient, *, enabled: bool) -> None:
        self._client = client
        self._enabled = enabled

    async def find(self, tag: str, since: float) -> str | None:
        """The video_id whose title carries `[jb-<tag>]`, None when absent; ApiError when the
        listing cannot be read (or tags are off, so there is nothing to look for)."""
        if not self._enabled:
            raise ApiError("reconciliation tags are off (run.reconcile_tag = false)")
        marker = f"[jb-{tag}]"
        async for video in iter_product_videos(self._client, since=since - CLOCK_SKEW_SECONDS):
            if marker in str(video.get("title") or ""):
                log.info("found the render of tag %s: %s", tag, video.get("id"))
                return str(video["id"])
        return None
