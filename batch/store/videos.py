"""What follows submission: final video statuses (from polling and webhooks) and the webhook
events already applied."""

from __future__ import annotations

from collections.abc import Sequence

from batch.store.connection import Connection, iso
from batch.store.records import PendingVideo, VideoUpdate


class VideoQueries(Connection):
    def pending_videos(self) -> list[PendingVideo]:
        """Submitted videos whose render is not final yet, or completed without a video URL
        (the API gave none, or one refused as unsafe): asked again, or no later answer would
        ever give the URL `download` needs."""
        rows = self._db.execute(
            "SELECT video_id, submitted_at FROM jobs WHERE status = 'submitted' "
            "AND video_id IS NOT NULL AND (coalesce(video_status, 'processing') = 'processing' "
            "OR (video_status = 'completed' AND video_url IS NULL))"
        )
        return [PendingVideo(video_id, float(at or 0.0)) for video_id, at in rows]

    def record_video_status(self, update: VideoUpdate) -> bool:
        """True when the update changed a job; the first sighting of a final status is kept,
        and a final status (completed, failed) never changes."""
        final = update.status in ("completed", "failed")
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET video_status = ?, video_url = coalesce(?, video_url), "
                "cover_url = coalesce(?, cover_url), duration = coalesce(?, duration), "
                "deducted_credit = coalesce(?, deducted_credit), error = coalesce(?, error), "
                "completed_at = "
                "CASE WHEN ? = 1 THEN coalesce(completed_at, ?) ELSE completed_at END, "
                "updated_at = ? WHERE video_id = ? AND (coalesce(video_status, '') != ? "
                "OR coalesce(video_url, '') != coalesce(?, video_url, '')) "
                # A final status is never changed again, whoever reports otherwise (replays).
                "AND (coalesce(video_status, '') NOT IN ('completed', 'failed') "
                "OR video_status = ?)",
                (
                    update.status,
                    update.video_url or None,
                    update.cover_url or None,
                    update.duration,
                    update.deducted_credit,
                    update.error,
                    int(final),
                    update.seen_at,
                    self._clock(),
                    update.video_id,
                    update.status,
                    update.video_url or None,
                    update.status,
                ),
            )
        return cursor.rowcount > 0

    def video_states(self, video_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """The video columns of these videos, as results-file text."""
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(video_ids), 10_000):
            chunk = list(video_ids[start : start + 10_000])
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(
                "SELECT video_id, video_status, video_url, cover_url, duration, deducted_credit, "
                f"error, completed_at FROM jobs WHERE video_id IN ({marks})",
                chunk,
            ):
                video_id, status, url, cover, duration, credit, error, completed = row
                found[video_id] = {
                    "video_status": status or "",
                    "video_url": url or "",
                    "cover_url": cover or "",
                    "duration": "" if duration is None else f"{duration:g}",
                    "deducted_credit": "" if credit is None else f"{credit:g}",
                    "error": error or "",
                    "completed_at": "" if completed is None else iso(completed),
                }
        return found

    def claim_event(self, event_id: str) -> bool:
        """False when this webhook event was seen before (JoggAI retries deliveries)."""
        with self._write() as db:
            claimed = db.execute(
                "INSERT INTO webhook_events (event_id, received_at) VALUES (?, ?) "
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                (event_id, self._clock()),
            ).fetchone()
        return claimed is not None
