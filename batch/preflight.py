"""Pre-flight: rows checked against what the account can use, and the account checked before a run.

A create rejected with 40000 for a misspelled visual style costs one of only 20 POSTs a minute,
so every row's avatar (id and type), voice, music and visual style (for the row's aspect ratio)
are looked up first. A row that fails becomes invalid (fields None, with problems) and is never
POSTed; a near miss names the closest match. A value that differs from a known one only in case
(or spacing, for style names) is replaced by the canonical spelling, and the row gets the
fingerprint of the corrected fields, since that is the request that will be sent.

`check_account` refuses a bad key before anything is planned; `credit_warning` says when the
account reports fewer credits than the jobs planned (only a warning: the figure is unreliable).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from batch.catalog import CatalogRow, RowProblem
from batch.errors import AccountError, ApiError, ConfigError
from batch.joggai.client import JoggClient
from batch.joggai.lookup import Avatar, LookupConfig, Lookups, LookupService, open_service
from batch.payload import ResolvedFields, fingerprint

log = logging.getLogger(__name__)

_CUTOFF: Final = 0.6  # difflib's default: close enough to be the likely intent
_AVATAR_KINDS: Final = {0: "public", 1: "custom"}
# The fields a check reads (and may correct): its verdict is remembered per combination of them.
_CHECKED: Final = (
    "avatar_id",
    "avatar_type",
    "voice_id",
    "music_id",
    "visual_style",
    "aspect_ratio",
)
_MAX_VERDICTS: Final = 100_000


def _style_key(name: str) -> str:
    return re.sub(r"\s+", " ", name).strip().casefold()


# A folded spelling that several listed names share: a row spelled so is refused, not guessed.
_AMBIGUOUS = "\0ambiguous"


def _folded(names: Iterable[str], fold: Callable[[str], str]) -> dict[str, str]:
    """Each name by its folded spelling; `_AMBIGUOUS` where several share one."""
    folded: dict[str, str] = {}
    for name in names:
        key = fold(name)
        folded[key] = _AMBIGUOUS if key in folded and folded[key] != name else name
    return folded


def _closest(wanted: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like `wanted`, ignoring case; None when nothing is close."""
    by_key: dict[str, str] = {}
    for candidate in candidates:
        by_key.setdefault(candidate.casefold(), candidate)
    found = difflib.get_close_matches(wanted.casefold(), by_key, n=1, cutoff=_CUTOFF)
    return by_key[found[0]] if found else None


def _hint(suggestion: str | None, listing: str) -> str:
    """A suggestion when there is one, else where to find the values that exist."""
    return f"; did you mean {suggestion}?" if suggestion else f" (list them with `{listing}`)"


class Preflight:
    """Checks rows against one account's look-ups; build it once per run with `Preflight.fetch`."""

    def __init__(self, lookups: Lookups) -> None:
        self.lookups = lookups
        self._avatars: dict[tuple[int, int], Avatar] = {(a.type, a.id): a for a in lookups.avatars}
        self._voices = frozenset(voice.voice_id for voice in lookups.voices)
        self._voices_folded = _folded(self._voices, str.casefold)
        self._music = {track.id: track.name for track in lookups.music}
        self._style_names = {
            ratio: frozenset(style.name for style in styles)
            for ratio, styles in lookups.styles.items()
        }
        self._styles = {
            ratio: _folded(names, _style_key) for ratio, names in self._style_names.items()
        }
        # Checked fields -> the problems found, or the corrections to make ({}: none).
        self._verdicts: dict[tuple[object, ...], tuple[RowProblem, ...] | dict[str, Any]] = {}

    @classmethod
    async def fetch(cls, service: LookupService) -> Preflight:
        """Every look-up list (cached, or fetched through the service's client)."""
        return cls(await service.all())

    def check(self, row: CatalogRow) -> CatalogRow:
        """The row with canonical spellings and a new fingerprint, or invalid with its problems.

        A row that is already invalid comes back unchanged.
        """
        fields = row.fields
        if fields is None:
            return row
        # A catalog holds a handful of avatar, voice and style combinations: each checked once.
        key = tuple(getattr(fields, name) for name in _CHECKED)
        verdict = self._verdicts.get(key)
        if verdict is None:
            if len(self._verdicts) >= _MAX_VERDICTS:
                self._verdicts.clear()
            verdict = self._verdicts[key] = self._verdict(fields)
        if isinstance(verdict, tuple):
            return row._replace(fields=None, problems=row.problems + verdict, fingerprint=None)
        if not verdict:
            return row
        corrected = fields._replace(**verdict)
        return row._replace(fields=corrected, fingerprint=fingerprint(corrected))

    def _verdict(self, fields: ResolvedFields) -> tuple[RowProblem, ...] | dict[str, Any]:
        """The problems of these fields, or the corrected spellings of the checked ones."""
        problems: list[RowProblem] = []
        corrected = fields
        for check in (self._avatar, self._voice, self._music_track, self._visual_style):
            result = check(corrected)
            if isinstance(result, RowProblem):
                problems.append(result)
            else:
                corrected = result
        if problems:
            return tuple(problems)
        return {
            name: getattr(corrected, name)
            for name in _CHECKED
            if getattr(corrected, name) != getattr(fields, name)
        }

    def _avatar(self, fields: ResolvedFields) -> ResolvedFields | RowProblem:
        avatar_type = 0 if fields.avatar_type is None else fields.avatar_type
        if (avatar_type, fields.avatar_id) in self._avatars:
            return fields
        kind = _AVATAR_KINDS.get(avatar_type, str(avatar_type))
        other = 1 - avatar_type
        if (other, fields.avatar_id) in self._avatars:
            reason = (
                f"avatar {fields.avatar_id} is a {_AVATAR_KINDS[other]} avatar, not a {kind} one; "
                f"set avatar_type to {other} ({_AVATAR_KINDS[other]})"
            )
            return RowProblem("avatar_type", str(fields.avatar_type), reason)
        same_kind = {str(a.id): a for (t, _), a in self._avatars.items() if t == avatar_type}
        near = _closest(str(fields.avatar_id), same_kind)
        hint = f"{near} ({same_kind[near].name})" if near else None
        reason = f"{fields.avatar_id} is not a {kind} avatar of this account" + _hint(
            hint, "jogg-batch lookup avatars"
        )
        return RowProblem("avatar_id", str(fields.avatar_id), reason)

    def _voice(self, fields: ResolvedFields) -> ResolvedFields | RowProblem:
        voice = fields.voice_id
        if voice is None or voice in self._voices:
            return fields
        canonical = self._voices_folded.get(voice.casefold())
        if canonical == _AMBIGUOUS:
            reason = (
                f"{voice!r} matches several voices of this account but none exactly; "
                "write one as `lookup voices` lists it"
            )
            return RowProblem("voice_id", voice, reason)
        if canonical is not None:
            return fields._replace(voice_id=canonical)
        near = _closest(voice, self._voices)
        reason = f"{voice!r} is not a voice of this account" + _hint(
            repr(near) if near else None, "jogg-batch lookup voices"
        )
        return RowProblem("voice_id", voice, reason)

    def _music_track(self, fields: ResolvedFields) -> ResolvedFields | RowProblem:
        music = fields.music_id
        if music is None or music in self._music:
            return fields
        near = _closest(str(music), (str(track) for track in self._music))
        hint = f"{near} ({self._music[int(near)]})" if near else None
        reason = f"{music} is not a music track of this account" + _hint(
            hint, "jogg-batch lookup music"
        )
        return RowProblem("music_id", str(music), reason)

    def _visual_style(self, fields: ResolvedFields) -> ResolvedFields | RowProblem:
        style, ratio = fields.visual_style, fields.aspect_ratio
        if style is None:
            return fields
        if style in self._style_names.get(ratio, ()):
            return fields  # as listed: even where another differs from it only in case
        styles = self._styles.get(ratio, {})
        canonical = styles.get(_style_key(style))
        if canonical == _AMBIGUOUS:
            reason = f"{style!r} matches several visual styles for {ratio} but none exactly;"
            return RowProblem(
                "visual_style", style, reason + " write one as `lookup styles` lists it"
            )
        if canonical is not None:
            return fields._replace(visual_style=canonical)
        elsewhere = [r for r, names in self._styles.items() if _style_key(style) in names]
        if elsewhere:
            reason = (
                f"{style!r} is not a visual style for {ratio}; it exists for "
                f"{' and '.join(elsewhere)} only"
            )
        else:
            near = _closest(style, styles.values())
            reason = f"{style!r} is not a visual style for {ratio}" + _hint(
                repr(near) if near else None, f"jogg-batch lookup styles --aspect-ratio {ratio}"
            )
        return RowProblem("visual_style", style, reason)


def load_preflight(
    config: LookupConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> Preflight:
    """`load_preflight_async` for synchronous callers, on an event loop of its own."""
    return asyncio.run(load_preflight_async(config, transport=transport))


async def load_preflight_async(
    config: LookupConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> Preflight:
    """For `validate --online` and a dry run: checks the key, then fetches the look-ups.

    Raises AccountError on a refused key, ApiError when the account or a list cannot be read.
    """
    async with open_service(config, transport=transport) as (client, service):
        await check_account(client)
        return await Preflight.fetch(service)


# ---- the account, before a run ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """Who the key belongs to (whoami), for the log line at the start of a run."""

    username: str
    email: str


async def check_account(client: JoggClient) -> Account:
    """`GET /v2/user/whoami`: AccountError on a refused key, ApiError when it cannot be asked."""
    outcome = await client.whoami()
    if outcome.kind == "account":
        raise AccountError(
            f"the API refused the key ({outcome}); nothing was sent. Check the key: "
            "JOGG_API_KEY, or the file api.key_file names",
            code=outcome.code,
            http_status=outcome.http_status,
        )
    if outcome.http_status is not None and (
        outcome.http_status in (404, 405) or 300 <= outcome.http_status < 400
    ):
        raise ConfigError(
            f"{client.base_url} is not JoggAI's API: GET /v2/user/whoami answered "
            f"{outcome.http_status} ({outcome.message}); set --base-url (or JOGG_BASE_URL) to "
            "the API's host alone, such as https://api.jogg.ai (nothing was sent)"
        )
    if outcome.kind != "ok":
        raise ApiError(
            f"cannot check the account before the run ({outcome}{client.proxy_note()}); "
            "nothing was sent",
            code=outcome.code,
            http_status=outcome.http_status,
        )
    data = outcome.data or {}
    return Account(str(data.get("username") or ""), str(data.get("email") or ""))


async def remaining_credits(client: JoggClient) -> float | None:
    """`GET /v2/user/remaining_quota`; None when it cannot be read (never a reason to stop)."""
    outcome = await client.remaining_quota()
    value = (outcome.data or {}).get("remaining_quota") if outcome.kind == "ok" else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        log.info("cannot read the remaining credits (%s)", outcome)
        return None
    return float(value)


def credit_warning(remaining: float | None, planned: int) -> str | None:
    """The warning to log when the account reports fewer credits than the jobs planned."""
    if remaining is None or remaining >= planned:
        return None
    return (
        f"the account reports {remaining:g} credit(s) left for {planned} video(s) planned; "
        "that figure is known to be unreliable, so the run goes on, and stops if the API "
        "refuses for lack of credit (18020)"
    )
