"""Request-body checks for the POST endpoints, with messages that name the offending field.

A violation raises `Rejected(code, msg)`: 40000 for a malformed or unknown value, 10104 for a
product id the sandbox does not know. Unknown extra fields are ignored, as APIs usually do.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from batch.sandbox.catalogs import (
    CUSTOM_AVATAR_IDS,
    MUSIC_IDS,
    PUBLIC_AVATAR_IDS,
    VISUAL_STYLE_NAMES,
    VOICE_IDS,
)
from batch.vocabulary import (
    ASPECT_RATIOS,
    AVATAR_TYPES,
    DEFAULT_ASPECT_RATIO,
    LANGUAGES,
    LENGTHS,
    SCRIPT_STYLES,
    Code,
)


class Rejected(Exception):
    def __init__(self, code: Code, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _param(field: str, problem: str) -> Rejected:
    return Rejected(Code.PARAMETER, f"Parameter error: {field} {problem}")


def _object(body: dict[str, Any], field: str) -> dict[str, Any]:
    value = body.get(field)
    if value is None:
        raise _param(field, "is required")
    if not isinstance(value, dict):
        raise _param(field, "must be an object")
    return value


def _string(obj: dict[str, Any], key: str, field: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _param(field, "is required")
        return None
    if not isinstance(value, str):
        raise _param(field, "must be a string")
    return value


def _integer(obj: dict[str, Any], key: str, field: str, *, required: bool = False) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _param(field, "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _param(field, "must be an integer")
    return value


def _one_of(value: object, allowed: tuple[object, ...], field: str) -> None:
    if value not in allowed:
        raise _param(field, f"must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def is_http_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def is_loopback_url(text: str) -> bool:
    host = urlsplit(text).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_create_video(body: object, product_exists: Callable[[str], bool]) -> None:
    """Validate a `POST /v2/create_video_from_product` body against the spec and the catalogs."""
    if not isinstance(body, dict):
        raise _param("body", "must be a JSON object")
    product_id = _string(body, "product_id", "product_id", required=True)
    spec = _object(body, "video_spec")
    length = spec.get("length")
    if length is None:
        raise _param("video_spec.length", "is required")
    _one_of(length, LENGTHS, "video_spec.length")
    aspect_ratio = _string(spec, "aspect_ratio", "video_spec.aspect_ratio") or DEFAULT_ASPECT_RATIO
    _one_of(aspect_ratio, ASPECT_RATIOS, "video_spec.aspect_ratio")
    if spec.get("caption") is not None and not isinstance(spec["caption"], bool):
        raise _param("video_spec.caption", "must be a boolean")
    _string(spec, "name", "video_spec.name")

    avatar = _object(body, "avatar")
    avatar_id = _integer(avatar, "id", "avatar.id", required=True)
    avatar_type = _integer(avatar, "type", "avatar.type")
    avatar_type = 0 if avatar_type is None else avatar_type
    _one_of(avatar_type, AVATAR_TYPES, "avatar.type")
    known = PUBLIC_AVATAR_IDS if avatar_type == 0 else CUSTOM_AVATAR_IDS
    if avatar_id not in known:
        kind = "public" if avatar_type == 0 else "custom"
        raise _param("avatar.id", f"{avatar_id} is not a {kind} avatar (avatar.type {avatar_type})")

    voice_id = _string(_object(body, "voice"), "id", "voice.id")
    if voice_id is not None and voice_id not in VOICE_IDS:
        raise _param("voice.id", f"{voice_id!r} is not a known voice")
    music_id = _integer(_object(body, "audio"), "music_id", "audio.music_id")
    if music_id is not None and music_id not in MUSIC_IDS:
        raise _param("audio.music_id", f"{music_id} is not a known music track")

    script = _object(body, "script")
    style = _string(script, "style", "script.style", required=True)
    _one_of(style, SCRIPT_STYLES, "script.style")
    language = _string(script, "language", "script.language", required=True)
    _one_of(language, LANGUAGES, "script.language")

    visual_style = _string(body, "visual_style", "visual_style")
    if visual_style is not None and visual_style not in VISUAL_STYLE_NAMES[aspect_ratio]:
        raise _param("visual_style", f"{visual_style!r} is not a visual style for {aspect_ratio}")
    _string(body, "override_script", "override_script")
    webhook_url = _string(body, "webhook_url", "webhook_url")
    if webhook_url is not None and not is_http_url(webhook_url):
        raise _param("webhook_url", f"{webhook_url!r} is not an http(s) URL")

    assert product_id is not None  # required above
    if not product_exists(product_id):
        raise Rejected(Code.NOT_FOUND, f"Record not found: product_id {product_id!r}")


def check_create_product(body: object) -> dict[str, Any]:
    """Validate a `POST /v2/product` body; returns the stored ProductInfo fields."""
    if not isinstance(body, dict):
        raise _param("body", "must be a JSON object")
    url = _string(body, "url", "url")
    name = _string(body, "name", "name")
    if not url and not name:
        raise _param("url or name", "is required")
    if url is not None and not is_http_url(url):
        raise _param("url", f"{url!r} is not an http(s) URL")
    media = body.get("media", [])
    if not isinstance(media, list):
        raise _param("media", "must be an array")
    for index, item in enumerate(media):
        if not isinstance(item, dict):
            raise _param(f"media[{index}]", "must be an object")
        _one_of(item.get("type"), (1, 2), f"media[{index}].type")
        for key in ("name", "url", "description"):
            _string(item, key, f"media[{index}].{key}")
    fallback_name = f"Product from {urlsplit(url).hostname}" if url else ""
    return {
        "url": url or "",
        "name": name or fallback_name,
        "description": _string(body, "description", "description") or "",
        "target_audience": _string(body, "target_audience", "target_audience") or "",
        "media": media,
    }
