"""A resolved catalog row -> the `POST /v2/create_video_from_product` body, and the job's identity.

Owns the request models (mirroring the vendor schema, rejecting unknown fields), the normalised
per-row values (`ResolvedFields`), the built-in request defaults and the scalar normalisers that
turn what people type (`9:16`, `30s`, `yes`, `127.0`) into what the API accepts, and
`fingerprint`, the sha256 that identifies a job in the state store for years.

Knows nothing of HTTP, files or pandas: the catalog and config modules feed it plain values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

import idna
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from batch.vocabulary import ASPECT_RATIOS, DEFAULT_ASPECT_RATIO, LANGUAGES, LENGTHS, SCRIPT_STYLES

Length = Literal["15", "30", "60"]
AspectRatio = Literal["portrait", "landscape", "square"]
AvatarType = Literal[0, 1]

# The reconciliation tag in video titles: finds the job of a video listed by the API. It leads
# the title (a listing that cuts titles keeps it); older versions put it at the end.
TAG_PATTERN: Final = re.compile(r"\[jb-([0-9a-f]+)\]", re.IGNORECASE)


def name_with_tag(name: str | None, tag: str) -> str:
    """The title to send: `[jb-<tag>] <name>`."""
    return f"[jb-{tag}] {name}" if name else f"[jb-{tag}]"


def _one_of(allowed: tuple[str, ...], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not a {what}")
        return value

    return AfterValidator(check)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VideoSpec(_Model):
    length: Length
    aspect_ratio: AspectRatio = "landscape"
    caption: bool | None = None
    name: str | None = None


class AvatarRef(_Model):
    id: int
    type: AvatarType | None = None


class VoiceRef(_Model):
    id: str | None = None


class AudioRef(_Model):
    music_id: int | None = Field(default=None, ge=0)


class ScriptSpec(_Model):
    style: Annotated[str, _one_of(SCRIPT_STYLES, "script style")]
    language: Annotated[str, _one_of(LANGUAGES, "language")]


class CreateVideoRequest(_Model):
    """The body of `POST /v2/create_video_from_product` (vendor schema, §3.3 of the reference)."""

    product_id: str = Field(min_length=1)
    video_spec: VideoSpec
    avatar: AvatarRef
    voice: VoiceRef
    audio: AudioRef
    script: ScriptSpec
    visual_style: str | None = None
    override_script: str | None = None
    webhook_url: str | None = None

    def to_body(self, tag: str | None = None) -> dict[str, Any]:
        """The JSON body with None dropped; a tag leads the title as `[jb-<tag>] `."""
        body = self.model_dump(exclude_none=True)
        if tag is not None:
            body["video_spec"]["name"] = name_with_tag(self.video_spec.name, tag)
        return body


class ProductDetails(NamedTuple):
    """A product to create at run time (`POST /v2/product`) for a row without a product_id."""

    url: str | None
    name: str | None
    description: str | None
    target_audience: str | None
    image_urls: tuple[str, ...]


class ResolvedFields(NamedTuple):
    """Every request value of one row, normalised: canonical strings, ints, bools or None."""

    product_id: str | None
    product: ProductDetails | None
    length: str
    aspect_ratio: str
    caption: bool | None
    name: str | None
    avatar_id: int
    avatar_type: int | None
    voice_id: str | None
    music_id: int | None
    script_style: str
    language: str
    visual_style: str | None
    override_script: str | None
    webhook_url: str | None


@dataclass(frozen=True, slots=True)
class RequestDefaults:
    """One default per request field, used where a row leaves the value empty.

    `video_name` may be a template over row columns (`"{title} - {sku}"`); the catalog expands it.
    """

    length: str = "30"
    aspect_ratio: str = DEFAULT_ASPECT_RATIO
    caption: bool | None = False
    avatar_id: int = 127
    avatar_type: int | None = 0
    voice_id: str | None = "en-US-ChristopherNeural"
    music_id: int | None = None
    script_style: str = "Storytime"
    language: str = "english"
    visual_style: str | None = None
    video_name: str | None = None
    override_script: str | None = None
    webhook_url: str | None = None


# Bump only with a migration plan: a new encoding gives every existing job a new identity,
# so every catalog would be rendered (and paid for) again.
FINGERPRINT_VERSION: Final = "jb-fp-1"


def _encode(value: object) -> str:
    # Type-tagged so that None, "", 1, "1" and True never encode alike; `\` and `|` are escaped
    # so that the joined string splits back into exactly the original fields.
    if value is None:
        return "-"
    if value is True:
        return "T"
    if value is False:
        return "F"
    if isinstance(value, int):
        return f"#{value}"
    text = str(value)
    return "'" + text.replace("\\", "\\\\").replace("|", "\\|")


# The fields `fingerprint` encodes after FINGERPRINT_VERSION, in order, each as
# `fingerprint_part` encodes it (`product_id`: the product's own encoding when it has no id).
FINGERPRINT_FIELDS: Final = (
    "product_id", "length", "aspect_ratio", "caption", "name", "avatar_id", "avatar_type",
    "voice_id", "music_id", "script_style", "language", "visual_style", "override_script",
)  # fmt: skip


def fingerprint_part(value: object) -> str:
    """How `fingerprint` encodes one field's value: for encoding a column's distinct values once."""
    return _encode(value)


# What `fingerprint` hashes its encoded fields with (callers that encode a column at a time too).
FINGERPRINT_HASH: Final = hashlib.sha256


def _encode_product(fields: ResolvedFields) -> str:
    if fields.product_id is not None or fields.product is None:
        return _encode(fields.product_id)
    product = fields.product
    if product.url is not None:
        return _encode(f"product:{product.url}")
    details = (product.name, product.description, product.target_audience, *product.image_urls)
    return _encode("details:" + "|".join(_encode(part) for part in details))


def _text(value: str | None) -> str:
    return "-" if value is None else "'" + value.replace("\\", "\\\\").replace("|", "\\|")


def fingerprint(fields: ResolvedFields) -> str:
    """sha256 hex of a versioned, unambiguous encoding of every field except `webhook_url`.

    The webhook only says where to report, not what to render, so changing it must not
    re-render (and re-pay for) a video. Each field is encoded as `_encode` does; the common
    types are spelled out inline because this runs for every row of million-row catalogs.
    """
    (pid, product, length, aspect_ratio, caption, name, avatar_id, avatar_type, voice_id,
     music_id, script_style, language, visual_style, override_script, _) = fields  # fmt: skip
    parts = (
        FINGERPRINT_VERSION,
        _text(pid) if pid is not None or product is None else _encode_product(fields),
        _text(length),
        _text(aspect_ratio),
        "-" if caption is None else ("T" if caption else "F"),
        _text(name),
        f"#{avatar_id}",
        "-" if avatar_type is None else f"#{avatar_type}",
        _text(voice_id),
        "-" if music_id is None else f"#{music_id}",
        _text(script_style),
        _text(language),
        _text(visual_style),
        _text(override_script),
    )
    return FINGERPRINT_HASH("|".join(parts).encode()).hexdigest()


def build_request(fields: ResolvedFields, product_id: str | None = None) -> CreateVideoRequest:
    """The request for one row; `product_id` overrides when the product was created at run time.

    Raises ValueError when there is no product id, pydantic.ValidationError (a ValueError) when a
    value breaks the vendor schema.
    """
    product = product_id if product_id is not None else fields.product_id
    if product is None:
        raise ValueError("the row has no product_id; create its product first")
    return CreateVideoRequest(
        product_id=product,
        video_spec=VideoSpec.model_validate(
            {
                "length": fields.length,
                "aspect_ratio": fields.aspect_ratio,
                "caption": fields.caption,
                "name": fields.name,
            }
        ),
        avatar=AvatarRef.model_validate({"id": fields.avatar_id, "type": fields.avatar_type}),
        voice=VoiceRef(id=fields.voice_id),
        audio=AudioRef(music_id=fields.music_id),
        script=ScriptSpec(style=fields.script_style, language=fields.language),
        visual_style=fields.visual_style,
        override_script=fields.override_script,
        webhook_url=fields.webhook_url,
    )


# ---- scalar normalisers: what people type -> what the API accepts, or ValueError(reason) ----

# Also as German, French, Spanish, Italian and Portuguese shops write them, Airtable's
# checkbox, and Excel's TRUE and FALSE in Dutch, the Nordic languages, Polish, Czech, Hungarian,
# Russian and Turkish.
_TRUE: Final = frozenset(
    {"yes", "y", "true", "t", "1", "on", "\u2713", "\u2714", "\u2611", "\u2705",
     "ja", "wahr", "oui", "vrai", "sí", "si", "verdadero", "vero", "sim", "verdadeiro",
     "checked", "waar", "sant", "sand", "prawda", "tosi", "pravda", "igaz", "истина", "doğru"}
)  # fmt: skip
_FALSE: Final = frozenset(
    {"no", "n", "false", "f", "0", "off", "\u2717", "\u2718", "\u2610", "\u274c",
     "nein", "falsch", "non", "faux", "falso", "não", "nao", "unchecked", "onwaar", "falskt",
     "falsk", "fałsz", "epätosi", "nepravda", "hamis", "ложь", "yanlış", "yanliş"}
)  # fmt: skip
_RATIOS: Final = {
    "9:16": "portrait", "16:9": "landscape", "1:1": "square",
    "vertical": "portrait", "horizontal": "landscape",
}  # fmt: skip
# A ratio a spreadsheet took for a time, in 24 or 12 hours (16:9 as `4:09 PM`).
_CLOCK: Final = re.compile(r"(\d{1,2}):(\d{2})(?::00)?(am|pm)?")
# A name with its ratio, as the tool's own messages write it: `portrait (9:16)`.
_NAMED_RATIO: Final = re.compile(r"([a-z]+)\((\d+:\d+)\)")
_RATIO_SIGN: Final = re.compile(r"(\d+)[x\u00d7/](\d+)")  # 9x16, 9×16, 9/16
_LENGTH_UNIT: Final = re.compile(r"^(.*?)\s*(s|sec|secs|second|seconds)$")
_LENGTH_MINUTES: Final = re.compile(r"^(.*?)\s*(min|mins|minute|minutes)$")
_DECIMAL_COMMA_WHOLE: Final = re.compile(r"(\d+),0+")  # 15,0: a `;` file's decimal comma
# A duration as a spreadsheet or an Airtable export writes one: h:mm:ss, and ISO 8601's.
_LENGTH_CLOCK: Final = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})(?:\.0+)?")
_ISO_DURATION: Final = re.compile(r"pt(?:(\d+)m)?(?:(\d+)s)?")
_STYLE_KEYS: Final = {re.sub(r"[^a-z0-9]", "", style.lower()): style for style in SCRIPT_STYLES}
_STYLE_LIST: Final = ", ".join(SCRIPT_STYLES)
# The schema gives ids as `integer` with no bound; signed 64 bits is what servers commonly hold.
MAX_ID: Final = 2**63 - 1
# A float holds every whole number below this exactly; from it on, digits are lost (2**53 + 1
# is stored as 2**53).
FLOAT_EXACT: Final = 2**53
# A spreadsheet keeps 15 significant digits of a number: one of 16 digits or more typed into a
# number cell is stored with its last digits lost (1234567890123456 as 1234567890123450).
SPREADSHEET_EXACT: Final = 10**15
# A whole number as a float is written out (`9007199254740992.0`): Python's repr of a workbook's
# number cell, pandas' CSV of a float column.
_FLOAT_WHOLE_TEXT: Final = re.compile(r"[+-]?([0-9]+)\.0+")
# Digits (any script's: `１２７` is 127, as int() reads it), with the `.0` a spreadsheet's number
# cell gains when exported.
# `127`, `127.0`, or `127,0` as a decimal-comma export writes it (one zero: `1,000` is a
# thousand, never 1).
_WHOLE_TEXT: Final = re.compile(r"([+-]?\d+)(?:\.0*|,0)?")
# `2.000`: a whole number with three decimals, or 2000 with a dot between its thousands, as a
# German, Spanish or Italian spreadsheet writes it; which one is not in the text.
_THOUSANDS_OR_DECIMALS: Final = re.compile(r"([+-]?\d{1,3})\.000")


def shown(value: object) -> str:
    """A cell quoted as a person reads it, for messages: `'45'`, `'127.5'`, `'0:00:30'`, `'true'`.

    Typed Parquet and JSON cells are quoted like text ones, so a message never shows a Python
    repr (`datetime.timedelta(seconds=30)`) and the report can tell the value from the reason.
    """
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, dt.date | dt.time):
        text = value.isoformat()
    else:  # ints, other floats, durations (`0:00:30`), decimals
        text = str(value)
    return repr(text)


def _number(value: object) -> float | None:
    """The numeric value of an int, float or numeric string; None if it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def float_digits_lost(value: object) -> bool:
    """A float from 2**53 on, or the text of a float from `SPREADSHEET_EXACT` on
    (`1234567890123450.0`, as a workbook's number cell or pandas' CSV of a float column writes
    it, and a spreadsheet may have cut): a whole number whose last digits may not be the ones
    typed, so never an id."""
    if isinstance(value, float):
        return value.is_integer() and abs(value) >= FLOAT_EXACT
    if isinstance(value, str) and (match := _FLOAT_WHOLE_TEXT.fullmatch(value.strip())):
        return abs(int(match.group(1))) >= SPREADSHEET_EXACT
    return False


def normalize_text(value: object) -> str:
    """Free text (voice id, visual style, product id) without surrounding spaces; `12.0` -> `12`."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def normalize_length(value: object) -> str:
    """`30`, `"30"`, `30.0`, `"30s"`, `"30,0"` -> `"30"`; `"1 min"` -> `"60"`; a formula's binary
    noise as the whole number Excel shows (`60.00000000000001` -> `"60"`); a duration as
    `0:00:30`, ISO 8601's `PT30S`, a typed duration or time cell (`m:ss` is refused: Excel
    reads `0:30` as half an hour)."""
    text = str(value).strip().lower() if isinstance(value, str) else _seconds(value)
    minutes = False
    if isinstance(text, str) and (clock := _LENGTH_CLOCK.fullmatch(text)):
        hours, mins, secs = (int(part or 0) for part in clock.groups())
        text = str(hours * 3600 + mins * 60 + secs)
    elif isinstance(text, str) and (iso := _ISO_DURATION.fullmatch(text)):
        text = str(int(iso[1] or 0) * 60 + int(iso[2] or 0))
    if isinstance(text, str):
        if unit := _LENGTH_MINUTES.match(text):
            text, minutes = unit.group(1), True
        elif unit := _LENGTH_UNIT.match(text):
            text = unit.group(1)
        if whole := _DECIMAL_COMMA_WHOLE.fullmatch(text):
            text = whole.group(1)
    number = _number(text)
    if number is not None and (noise := _formula_noise(number)) is not None:
        number = float(noise)  # =0.1*600 is 60.00000000000001
    if number is not None and minutes:
        number *= 60
    if number is not None and number.is_integer() and str(int(number)) in LENGTHS:
        return str(int(number))
    raise ValueError(f"{shown(value)} is not a video length; use 15, 30 or 60")


def _seconds(value: object) -> object:
    """A typed duration (Parquet's, pandas' Timedelta) or time cell (a workbook's 0:00:30) as
    its seconds; any other value as it is."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, dt.time):
        return float(value.hour * 3600 + value.minute * 60 + value.second)
    return value


def normalize_aspect_ratio(value: object) -> str:
    """`9:16`/`portrait`/`vertical`, `16:9`/`landscape`/`horizontal`, `1:1`/`square`, words in
    any case, a ratio as `9x16` or `9/16` too, or both as `portrait (9:16)`. A spreadsheet
    stores `16:9` typed in a cell as the time 16:09 (`16:09:00`, `1:01` for `1:1`, or in 12
    hours `4:09 PM`): read back."""
    text = str(value).strip().lower().replace(" ", "").replace(".", "")  # `p.m.`
    if clock := _CLOCK.fullmatch(text):
        hour = int(clock[1]) % 12 + (12 if clock[3] == "pm" else 0) if clock[3] else int(clock[1])
        text = f"{hour}:{int(clock[2])}"
    elif (named := _NAMED_RATIO.fullmatch(text)) and _RATIOS.get(named[1], named[1]) == _RATIOS.get(
        named[2]
    ):
        text = named[1]
    elif ratio := _RATIO_SIGN.fullmatch(text):
        text = f"{ratio[1]}:{ratio[2]}"
    text = _RATIOS.get(text, text)
    if isinstance(value, str) and text in ASPECT_RATIOS:
        return text
    raise ValueError(
        f"{shown(value)} is not an aspect ratio; "
        "use portrait (9:16), landscape (16:9) or square (1:1)"
    )


def normalize_caption(value: object) -> bool:
    """yes/no, true/false, 1/0, y/n, on/off in any case (and booleans) -> bool; 1.0 and 0.0 too,
    as a float column of switches exports them; a check mark (✓ ✔ ☑ ✅) or a cross (✗ ✘ ☐ ❌)."""
    if isinstance(value, bool):
        return value
    if (number := _whole_number(value)) in (0, 1):
        return bool(number)
    text = normalize_text(value).lower() if isinstance(value, int | float | str) else ""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{shown(value)} is not a caption switch; use yes or no")


def _whole_number(value: object) -> int | None:
    """The exact integer a cell holds (`127`, `"127"`, Excel's `"127.0"`, a float 127.0), or None.

    Text is read from its digits, never through a float, so a 17-digit id keeps every digit;
    exponents (`1e3`) and fractions are not whole numbers.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else _formula_noise(value)
    if isinstance(value, str) and (match := _WHOLE_TEXT.fullmatch(value.strip())):
        return int(match.group(1))
    if isinstance(value, str) and _NOISY_TEXT.fullmatch(value.strip()):
        return _formula_noise(float(value))
    return None


# A formula's binary noise as a workbook stores it (=0.28*100 is 28.000000000000004): 16 or 17
# significant digits, the last ones noise.
_NOISY_TEXT: Final = re.compile(r"[+-]?\d{1,5}\.\d{11,}")


def _formula_noise(value: float) -> int | None:
    """The whole number Excel shows, and exports to CSV, for a formula's result with binary
    noise (15 significant digits: 28.000000000000004 is 28), or None for a real fraction."""
    shown = float(f"{value:.15g}")
    exact = shown.is_integer() and shown != value and abs(shown) < 2**53
    return int(shown) if exact else None


def normalize_int_id(value: object) -> int:
    """A whole id from 0 to 2**63-1: `127`, `"127"`, `"127.0"`, `127.0` -> 127.

    `127.5`, `1e3`, `2.000` (2, or 2000 in a locale that groups thousands with dots) and ids
    past the API's 64-bit integers are errors quoting the cell.
    """
    if isinstance(value, str) and (group := _THOUSANDS_OR_DECIMALS.fullmatch(value.strip())):
        raise ValueError(
            f"{shown(value)} is ambiguous: {group[1]} with three decimals, or {group[1]}000 "
            "with a dot between its thousands; write the id's digits alone"
        )
    number = _whole_number(value)
    if number is not None and float_digits_lost(value):
        # From 2**53 on a float's neighbours are more than 1 apart: which id was meant is lost.
        if isinstance(value, float):
            raise ValueError(
                f"{shown(value)} is too large for a float column to hold an id exactly; "
                "store the ids as integers or text"
            )
        raise ValueError(
            f"{shown(value)} was written from a float (a spreadsheet's number cell, a float "
            "column), which cannot hold an id this large exactly; format the ids as text "
            "(or store them as integers)"
        )
    if number is None:
        raise ValueError(
            f"{shown(value)} is not a whole-number id; write the id's digits, e.g. 127"
        )
    if number < 0:
        raise ValueError(f"{shown(value)} is not a valid id; ids are 0 or more")
    if number > MAX_ID:
        raise ValueError(f"{shown(value)} is too large for an id; ids go up to {MAX_ID}")
    return number


def normalize_avatar_type(value: object) -> int:
    """0 (or `public`) for a public avatar, 1 (or `custom`) for a custom one."""
    text = str(value).strip().lower()
    if text in ("public", "custom"):
        return 0 if text == "public" else 1
    number = _number(value)
    if number in (0.0, 1.0):
        return int(number)
    raise ValueError(f"{shown(value)} is not an avatar type; use 0 (public) or 1 (custom)")


def normalize_script_style(value: object) -> str:
    """Matched ignoring case, spaces and punctuation: `dont worry` -> `Don't Worry`."""
    key = re.sub(r"[^a-z0-9]", "", str(value).lower())
    if isinstance(value, str) and key in _STYLE_KEYS:
        return _STYLE_KEYS[key]
    raise ValueError(f"{shown(value)} is not a script style; use one of {_STYLE_LIST}")


def normalize_language(value: object) -> str:
    """A language name from the API's list, in any case: `French` -> `french`; or its ISO 639
    code, with a region or a script or not, as a BCP 47 tag or a POSIX locale writes it: `fr`,
    `fr-CA`, `pt_BR`, `zh-TW` and `zh-Hant-MY` (traditional-chinese), `nl_BE.UTF-8` (flemish).
    A tag saying more (`zh-yue` is Cantonese, `zh-hak` Hakka: not Mandarin) is one of the
    variants known here, or refused. Accents as a Mac writes them (`Español` decomposed) are
    the same name."""
    return _language(value, _language_of_tag)


def language_as_earlier_versions_read(value: object) -> str:
    """The language earlier versions read a cell as: a code by its first part alone, so
    `zh-yue` was Mandarin (`chinese`) and `nl_BE.UTF-8` Dutch. Kept as an earlier reading, so
    that a row sent so is not sent again now that it reads otherwise."""
    return _language(value, lambda text: _LANGUAGE_CODES.get(text.split("-")[0]))


def _language(value: object, of_tag: Callable[[str], str | None]) -> str:
    text = unicodedata.normalize("NFC", str(value)).strip().lower()
    if isinstance(value, str) and (noted := _NOTED.fullmatch(text)):
        return _language_with_a_note(value, noted[1], noted[2].strip())
    text = text.replace(" ", "-").replace("_", "-")
    if isinstance(value, str) and text in LANGUAGES:
        return text
    code = _LANGUAGE_VARIANTS.get(text) or _LANGUAGE_ENDONYMS.get(text) or of_tag(text)
    if isinstance(value, str) and code is not None and text not in _AMBIGUOUS_VARIANTS:
        return code
    if text == "uk":
        raise ValueError(
            f"{shown(value)} reads as the United Kingdom (British English) as much as Ukrainian's "
            "code: write english (or en-GB) or ukrainian (or uk-UA)"
        )
    raise ValueError(
        f"{shown(value)} is not a supported language; "
        "write its name, in any case, such as english or French (or its code: en, fr-CA)"
    )


def _language_with_a_note(value: str, name: str, note: str) -> str:
    """A language with a region or a script in brackets, as a form's list writes it: `English
    (US)`, `Português (Brasil)`. The note decides only where it names another of the API's
    languages: Chinese (Simplified, Traditional, Cantonese) and Dutch (Belgium: Flemish)."""
    try:
        language = normalize_language(name)
    except ValueError as exc:  # said of the cell as written
        raise ValueError(str(exc).replace(shown(name), shown(value), 1)) from None
    chosen = _NOTES_THAT_DECIDE.get(language)
    if chosen is None:
        return language
    if note in chosen:
        return chosen[note]
    raise ValueError(
        f"{shown(value)} does not say which of the API's languages it is "
        f"({', '.join(sorted(set(chosen.values())))}); write that one"
    )


# `English (US)`: a language and a note in brackets after it.
_NOTED: Final = re.compile(r"(.+?)\s*\(([^()]+)\)")
_NOTES_THAT_DECIDE: Final = {
    "chinese": {"simplified": "chinese", "mainland": "chinese", "china": "chinese",
                "prc": "chinese", "简体": "chinese", "traditional": "traditional-chinese",
                "taiwan": "traditional-chinese", "繁體": "traditional-chinese",
                "cantonese": "cantonese", "粤语": "cantonese"},
    "dutch": {"netherlands": "dutch", "nederland": "dutch", "belgium": "flemish",
              "belgië": "flemish", "belgie": "flemish", "flemish": "flemish", "vlaams": "flemish"},
}  # fmt: skip


# ISO 639 codes of the API's languages. `no` (Norwegian) is left out: in a cell it reads as
# "no language" as much as a code; `nb` and `nn` stand for it.
_LANGUAGE_CODES: Final = {
    "en": "english", "fil": "filipino", "fr": "french", "de": "german", "hi": "hindi",
    "id": "indonesian", "it": "italian", "ja": "japanese", "ko": "korean", "ms": "malay",
    "pt": "portuguese", "ru": "russian", "es": "spanish", "th": "thai", "vi": "vietnamese",
    "ar": "arabic", "el": "greek", "tr": "turkish", "sl": "slovenian", "hr": "croatian",
    "ro": "romanian", "zh": "chinese", "bn": "bengali", "ur": "urdu", "hu": "hungarian",
    "pl": "polish", "yue": "cantonese", "da": "danish", "ml": "malayalam", "ta": "tamil",
    "te": "telugu", "cs": "czech", "he": "hebrew", "zu": "zulu", "sv": "swedish",
    "lt": "lithuanian", "nl": "dutch", "nb": "norwegian", "nn": "norwegian", "fi": "finnish",
    "bg": "bulgarian", "lv": "latvian", "uk": "ukrainian", "mn": "mongolian", "fa": "persian",
    "or": "odia", "as": "assamese", "kn": "kannada", "tl": "tagalog", "am": "amharic",
    "sr": "serbian", "sk": "slovak", "sw": "swahili",
}  # fmt: skip
# Regions that name another of the API's languages than their code's.
# The API's languages by their own names, as a shop in that language writes them.
_LANGUAGE_ENDONYMS: Final = {
    "deutsch": "german", "español": "spanish", "espanol": "spanish", "castellano": "spanish",
    "français": "french", "francais": "french", "italiano": "italian",
    "português": "portuguese", "portugues": "portuguese", "nederlands": "dutch",
    "polski": "polish", "türkçe": "turkish", "turkce": "turkish", "svenska": "swedish",
    "dansk": "danish", "norsk": "norwegian", "suomi": "finnish", "čeština": "czech",
    "magyar": "hungarian", "română": "romanian", "русский": "russian", "українська": "ukrainian",
    "ελληνικά": "greek", "日本語": "japanese", "한국어": "korean", "中文": "chinese",
    "bahasa-indonesia": "indonesian", "tiếng-việt": "vietnamese", "עברית": "hebrew",
    "العربية": "arabic", "हिन्दी": "hindi", "ไทย": "thai",
}  # fmt: skip
_LANGUAGE_VARIANTS: Final = {
    "zh-tw": "traditional-chinese", "zh-hant": "traditional-chinese",
    "zh-hant-tw": "traditional-chinese", "nl-be": "flemish",
}  # fmt: skip
# Tags that say more than a language, a script and a region, and name one of the API's
# languages: IANA's tag of Cantonese before `yue`, .NET's old Traditional and Simplified Chinese.
_NAMED_TAGS: Final = {
    "zh-yue": "cantonese", "zh-cht": "traditional-chinese", "zh-chs": "chinese",
}  # fmt: skip
# A POSIX locale's encoding and modifier after the language and region: `zh_TW.UTF-8`, `de_DE@euro`.
_LOCALE_TAIL: Final = re.compile(r"(?:\.[a-z0-9-]+)?(?:@[a-z0-9-]+)?$")


# A BCP 47 variant subtag: a spelling or dialect of the language (`1996`, `oxendict`,
# `tradnl`), which does not change which of the API's languages it is.
_VARIANT: Final = re.compile(r"[a-z0-9]{5,8}|[0-9][a-z0-9]{3}")


def _language_of_tag(text: str) -> str | None:
    """The API's language a BCP 47 tag or a POSIX locale (`-` for `_`, in lower case) names by
    its language code and at most a script and a region; None for a tag that says more (an
    extended language, `zh-hak`; a variant), which is not guessed as its first part."""
    tag = _LOCALE_TAIL.sub("", text)
    if named := _NAMED_TAGS.get(tag) or _LANGUAGE_VARIANTS.get(tag):
        return named
    primary, *rest = tag.split("-")
    code = _LANGUAGE_CODES.get(primary)
    if rest and (named := _NAMED_TAGS.get(f"{primary}-{rest[0]}")):  # `zh-yue-HK`
        primary, code, rest = named, named, rest[1:]
    script = region = None
    for part in rest:
        if len(part) == 4 and part.isalpha() and script is None and region is None:
            script = part
        elif region is None and (
            (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit())
        ):
            region = part
        elif _VARIANT.fullmatch(part) or len(part) == 1:
            break  # a spelling (`de-CH-1996`), or an extension (`-u-ca-gregory`, `-x-...`)
        else:
            return None  # an extended language: `zh-hak` is Hakka, not Mandarin
    if code == "chinese":
        if f"zh-{region}" in _AMBIGUOUS_VARIANTS:
            return None  # Hong Kong, Macau: Cantonese, or Mandarin in traditional characters?
        if script == "hant" or (script is None and region == "tw"):
            return "traditional-chinese"
    if code == "dutch" and region == "be":
        return "flemish"
    return code


# Hong Kong and Macau write traditional characters and speak Cantonese: which is meant? And a
# market column's `UK` is British English, where ISO 639 says Ukrainian.
_AMBIGUOUS_VARIANTS: Final = frozenset({"zh-hk", "zh-mo", "zh-hant-hk", "zh-hant-mo", "uk"})


def normalize_url(value: object) -> str:
    """An absolute http(s) URL in one spelling of it: surrounding spaces removed, the scheme and
    host in lower case, the scheme's own port and an empty query or fragment left out, `/` for
    an empty path. `https://Shop.example.com:443/p/mug?` is `https://shop.example.com/p/mug`:
    the same page, one product and one video, never one for each way it is written.

    It is written as a URI, as a browser sends it: a host outside ASCII in its IDNA form
    (`xn--`), a character outside ASCII in the path, query or fragment as its UTF-8 bytes
    escaped (RFC 3987's mapping of an IRI), an escape in upper-case hex, and an escaped letter,
    digit or `-._~` as itself (RFC 3986, 6.2.2). So `https://café.example/thé` is
    `https://xn--caf-dma.example/th%C3%A9`, as one export writes it and another does not.
    Otherwise the path, query and fragment are kept as written (a site's paths may tell case
    apart, and a page routed by its fragment is another page)."""
    parts = urlsplit(written_url(value))
    host = _ascii_host(parts.hostname or "")
    port = parts.port  # checked by `written_url`
    default = {"http": 80, "https": 443}[parts.scheme.lower()]
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + (f"[{host}]" if ":" in host else host)
    if port is not None and port != default:
        netloc += f":{port}"
    try:
        path, query, fragment = (_as_uri(part) for part in parts[2:])
    except UnicodeEncodeError:  # a lone surrogate: text decoded wrongly, no URL
        raise ValueError(f"{shown(value)} is not an http(s) URL") from None
    return urlunsplit((parts.scheme.lower(), netloc, path or "/", query, fragment))


def _ascii_host(host: str) -> str:
    """A host name in ASCII: IDNA 2008 with Unicode's mapping (UTS 46, as browsers), or the name
    as it is where IDNA refuses it (the server is asked as written then)."""
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        return host


_ASCII: Final = "".join(map(chr, range(128)))
_ESCAPE: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED: Final = frozenset(string.ascii_letters + string.digits + "-._~")


def _as_uri(part: str) -> str:
    """A URL's path, query or fragment as a URI writes it (`normalize_url`); composed (NFC)
    first, so a name typed on one system and copied from another is one page."""
    if not part.isascii():
        part = quote(unicodedata.normalize("NFC", part), safe=_ASCII)
    return _ESCAPE.sub(_one_escape, part) if "%" in part else part


def _one_escape(match: re.Match[str]) -> str:
    char = chr(int(match[1], 16))
    return char if char in _UNRESERVED else "%" + match[1].upper()


def written_url(value: object) -> str:
    """An absolute http(s) URL as written, surrounding spaces removed: what earlier versions
    sent, and what a results file of theirs holds."""
    text = str(value).strip() if isinstance(value, str) else ""
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
        parts.port  # noqa: B018 (raises for a port outside 0..65535)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        hostname = None
    if hostname and parts.scheme.lower() in ("http", "https") and not re.search(r"\s", text):
        return text
    raise ValueError(f"{shown(value)} is not an http(s) URL")


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def fields_to_json(fields: ResolvedFields) -> str:
    """The compact JSON form the state keeps of a job's fields."""
    return _COMPACT_JSON.encode(fields)


def fields_from_json(text: str) -> ResolvedFields:
    """Inverse of `fields_to_json` (a NamedTuple comes back from JSON as a list)."""
    values = json.loads(text)
    product = values[1]
    if product is not None:
        url, name, description, audience, images = product
        values[1] = ProductDetails(url, name, description, audience, tuple(images))
    return ResolvedFields(*values)


def one_spelling(url: str) -> str:
    """`normalize_url` of a URL an earlier version recorded, or the URL as recorded where this
    version refuses it (a port past 65535, which earlier versions did not look at)."""
    try:
        return normalize_url(url)
    except ValueError:
        return url


def same_text(text: str | None) -> str | None:
    """Free text as a reader sees it: line ends as LF (CRLF, CR, and the breaks other tools
    write: FileMaker's vertical tab, Word's line and paragraph separators, NEL), characters
    composed (NFC), a no-break space as a space, no space or invisible character (a BOM, a
    zero-width space, a direction mark or isolate, a soft hyphen: `INVISIBLE_ENDS`) at either
    end, and no `'` before a leading `=`, `+`, `-` or `@`: the guard web tools' CSV exports put
    there so that a spreadsheet does not take `- Dimmable` or `@acme` for a formula (unless a
    `'` later closes it as a quote: `'@home' offers`). The catalog makes its cells alike the
    same way, a column at a time (`batch.catalog.normalize`)."""
    if text is None:
        return None
    spaced = _NO_BREAK.sub(" ", lines_composed(_OTHER_BREAKS.sub("\n", text)))
    return _FORMULA_GUARD.sub("", _INVISIBLE_ENDS.sub("", spaced))


def characters_lost(earlier: ResolvedFields, now: ResolvedFields) -> str | None:
    """Why `now` is not a request of its own but `earlier`'s with characters lost: a free text
    of it is `earlier`'s with each character outside ASCII as `?` (one a character, or one per
    UTF-16 unit); None for any other.

    Excel's "CSV (Comma delimited)" writes a code page, and a `?` for each character it cannot
    hold: a catalog whose only characters outside ASCII were emoji, Hebrew or Chinese is ASCII
    after it, read as UTF-8, and each such row was a changed request, paid for again, its
    avatar reading out question marks. An emoji question mark edited to `?` (`❓`) is an edit.
    So is a text that is `earlier`'s UTF-8 read as Windows-1252 (`CafÃ©`: a UTF-8 file without
    a BOM opened in Excel and saved), which the catalog cannot tell from real text when it
    has one such character (`batch.catalog.normalize.damaged_text`)."""
    now_texts = free_texts(now)
    for field, before in free_texts(earlier).items():
        after = now_texts[field]
        if before is None or after is None or before.isascii():
            continue
        if after == read_as_cp1252(before):
            return (
                f"{field}: {shown(after)} is the text of this row's last request "
                f"({shown(before)}) as UTF-8 read as Windows-1252: a spreadsheet opened the "
                "file in another encoding and saved it; take the text from the original "
                "file (in Excel: Data > From Text/CSV, UTF-8) and run again"
            )
        edited = all(char in _QUESTION_MARKS for char in before if not char.isascii())
        if "?" in after and not edited and _lost_to_question_marks(before).fullmatch(after):
            return (
                f"{field}: {shown(after)} is the text of this row's last request "
                f"({shown(before)}) with its characters outside ASCII as '?': a save as "
                "Excel's 'CSV (Comma delimited)' (or another tool writing a code page) lost "
                "them; save the catalog as 'CSV UTF-8' and run again"
            )
    return None


# Question marks outside ASCII: one edited to `?` is an edit, not a character lost.
_QUESTION_MARKS: Final = frozenset("\u2753\u2754\uff1f\u2047\u2048\u2049\u203d\u00bf\u2e2e")


def read_as_cp1252(text: str) -> str:
    """`text`'s UTF-8 bytes read as Windows-1252 (`Café` -> `CafÃ©`), as Excel reads a UTF-8
    file without a BOM."""
    return "".join(CP1252_CHARACTERS.get(byte, chr(byte)) for byte in text.encode("utf-8"))


def before_read_as_cp1252(text: str) -> str | None:
    """The text whose `read_as_cp1252` is `text`; None when there is none (a character past
    one byte, or bytes that are not UTF-8)."""
    try:
        return bytes(_CP1252_BYTES.get(char, ord(char)) for char in text).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


# Windows-1252's characters for the bytes 0x80-0x9F it defines; every other byte reads as its
# Latin-1 character (Excel reads the five it leaves undefined so too).
CP1252_CHARACTERS: Final = {
    byte: bytes([byte]).decode("cp1252")
    for byte in range(0x80, 0xA0)
    if byte not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
}
_CP1252_BYTES: Final = {char: byte for byte, char in CP1252_CHARACTERS.items()}


def free_texts(fields: ResolvedFields) -> dict[str, str | None]:
    """The free text of a request, by its catalog column."""
    product = fields.product
    return {
        "video_name": fields.name,
        "override_script": fields.override_script,
        "product_name": product and product.name,
        "description": product and product.description,
        "target_audience": product and product.target_audience,
    }


def _lost_to_question_marks(text: str) -> re.Pattern[str]:
    return re.compile("".join(re.escape(c) if c.isascii() else r"\?{1,2}" for c in text))


def alike_but_format_ends(text: str) -> str:
    """Free text as the versions before the other format characters at its ends (direction
    isolates, soft hyphens) and a formula guard's closing quote made it alike."""
    return _GUARD_BEFORE_QUOTES.sub("", alike_but_breaks(_OTHER_BREAKS.sub("\n", text)))


def alike_but_breaks(text: str) -> str:
    """Free text as the versions before the other tools' line breaks made it alike."""
    return _SEEN_ENDS.sub("", _NO_BREAK.sub(" ", lines_composed(text)))


def trimmed_lines(text: str) -> str:
    """Free text as the versions before no-break spaces and invisible ends made it alike."""
    return lines_composed(text).strip()


def lines_composed(text: str) -> str:
    """Text with LF line ends and composed characters (NFC): free text as the versions before
    spaces at its ends were trimmed made it alike."""
    return unicodedata.normalize("NFC", _LINE_ENDS.sub("\n", text))


_LINE_ENDS: Final = re.compile(r"\r\n?")
# A line break as tools other than a text editor write it in a cell: FileMaker's vertical tab,
# NEL (an EBCDIC export), Unicode's line and paragraph separators (Word, InDesign, JavaScript).
_OTHER_BREAKS: Final = re.compile("[\v\x85\u2028\u2029]")
# The guard: a `'` before a leading `=+-@`, unless another `'` (not one between two letters or
# digits: `it's`) closes it as a quote.
_FORMULA_GUARD: Final = re.compile("^'(?=[=+\\-@](?:[^']|[^\\W_]'[^\\W_])*$)")
_GUARD_BEFORE_QUOTES: Final = re.compile("^'(?=[=+\\-@])")
# The spaces that do not break a line: a space to a reader.
_NO_BREAK: Final = re.compile("[\u00a0\u2007\u202f]")
# The characters nobody sees that copies leave at a text's ends (with spaces): a byte order
# mark; zero-width spaces, joiners and direction marks; the embeddings and isolates of a copy of
# mixed-direction text (Windows, Android, browsers); a soft hyphen; a word joiner and the
# invisible operators; the Arabic letter mark, the Mongolian vowel separator, the combining
# grapheme joiner and Hangul fillers. Not variation selectors or tags: they end an emoji.
INVISIBLE_ENDS: Final = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F),
    (0x3164, 0x3164), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0),
)  # fmt: skip
_INVISIBLE: Final = "".join(f"{chr(low)}-{chr(high)}" for low, high in INVISIBLE_ENDS)
_INVISIBLE_ENDS: Final = re.compile(f"^[\\s{_INVISIBLE}]+|[\\s{_INVISIBLE}]+$")
# The ends the versions before `INVISIBLE_ENDS` trimmed (`alike_but_breaks`).
_SEEN_ENDS: Final = re.compile("^[\\s\ufeff\u200b-\u200f\u2060]+|[\\s\ufeff\u200b-\u200f\u2060]+$")


def fields_made_alike(fields: ResolvedFields) -> ResolvedFields:
    """`fields` with their free text made alike (`same_text`) and their URLs in one spelling
    (`normalize_url`): what this version sends for a job an earlier one recorded as the file
    wrote it."""
    product = fields.product
    if product is not None:
        product = product._replace(
            url=None if product.url is None else one_spelling(product.url),
            image_urls=tuple(one_spelling(url) for url in product.image_urls),
            name=same_text(product.name),
            description=same_text(product.description),
            target_audience=same_text(product.target_audience),
        )
    return fields._replace(
        product=product,
        name=same_text(fields.name),
        override_script=same_text(fields.override_script),
    )
