"""Settings: the built-in `batch/default.toml` (or `--config FILE`), `JOGG_BASE_URL`, `Overrides`.

Precedence for every request field: non-empty catalog cell > override (a CLI option) > config
file > built-in default. The catalog applies the first step; this module merges the rest into one
frozen `RunConfig` that the runner takes, by one path that every command shares (`resolve`).
Unknown keys are errors that name the key; the API key is read from `JOGG_API_KEY` (or
`api.key_file`) and is never taken from the command line. `configs/default.toml` is the same file,
for people to copy (a test keeps the two equal).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sqlite3
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from batch import payload, storage
from batch.catalog import CANONICAL_COLUMNS, CatalogOptions
from batch.catalog.normalize import DATABASE_NULLS, MISSING_TEXTS
from batch.errors import ConfigError, StateError
from batch.joggai.backoff import RetryPolicy
from batch.joggai.client import Timeouts, parse_base_url
from batch.joggai.quota import RateLimit, parse_rate
from batch.secret import Secret as Secret  # re-exported: callers take the key type from here
from batch.secret import checked_key
from batch.storage import Location, ObjectURL, parse_location
from batch.store.backend import DatabaseURL, PostgresDatabase, StateLocation, state_location
from batch.store.ledgers import choose_state

DEFAULT_BASE_URL = "https://api.jogg.ai"
# Package data: an installed wheel has no `configs/` folder.
BUILTIN_CONFIG = Path(__file__).resolve().parent / "default.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_true_or_false(value: object) -> object:
    """pydantic reads `true` as the number 1: `avatar_id = true` would send avatar 1."""
    if isinstance(value, bool):
        raise ValueError("is true or false, not a number")
    return value


# Numbers (and ids that may be written as text) in the settings, never a TOML boolean.
Count = Annotated[int, BeforeValidator(_not_true_or_false)]
Seconds = Annotated[float, BeforeValidator(_not_true_or_false)]
NumberOrText = Annotated[int | str, BeforeValidator(_not_true_or_false)]


class ApiSettings(_Section):
    base_url: str = DEFAULT_BASE_URL
    key_file: str = ""
    rate_limit: str = "20/min"
    concurrency: Count = Field(4, ge=1, le=256)
    connect_timeout: Seconds = Field(10.0, gt=0)
    read_timeout: Seconds = Field(60.0, gt=0)
    product_timeout: Seconds = Field(120.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _without_spaces(cls, value: str) -> str:
        return value.strip()  # pasted into JOGG_BASE_URL or a config file with a space

    @field_validator("rate_limit")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        try:
            parse_rate(value)
        except ValueError:
            raise ValueError(
                "is not a rate; write N/s, N/min or N/h with N above 0 (e.g. 20/min), or none"
            ) from None
        return value


class RetrySettings(_Section):
    max_attempts: Count = Field(5, ge=1)
    base_delay: Seconds = Field(2.0, ge=0)
    max_delay: Seconds = Field(60.0, ge=0)


# A delimiter spelt as an escape, as Hive's DDL (`FIELDS TERMINATED BY '\001'`) and shells do.
_ESCAPED_CHARACTER = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|([0-7]{3}))", re.IGNORECASE)


def delimiter_character(text: str) -> str:
    """The character a delimiter option names: itself, or `tab`, `\\t`, and an escape such as
    `\\001` or `\\x01` (a control character no one can type on a command line)."""
    if text.lower() in ("tab", "\\t"):
        return "\t"
    if found := _ESCAPED_CHARACTER.fullmatch(text):
        hexadecimal, unicode, octal = found.groups()
        return chr(int(octal, 8) if octal else int(hexadecimal or unicode, 16))
    return text


class CatalogSettings(_Section):
    format: Literal["", "csv", "parquet", "jsonl", "excel"] = ""
    delimiter: str = ""
    sheet: str = ""
    row_key: str = ""
    batch_rows: Count = Field(50_000, ge=1)

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(delimiter_character(value)) > 1:
            raise ValueError('is not one character; write e.g. ",", ";", "tab" or "\\001"')
        return value


class RunSettings(_Section):
    state: str = ""
    reconcile_tag: bool = True
    settle_seconds: Seconds = Field(300.0, gt=0)
    keep_runs: Count = Field(7, ge=1)
    claim_seconds: Seconds = Field(60.0, gt=0)
    shutdown_grace: Seconds = Field(30.0, ge=0)
    results_interval: Seconds = Field(30.0, gt=0)
    progress_interval: Seconds = Field(60.0, gt=0)


class DefaultsSettings(_Section):
    """Request field defaults; an empty string means "not set" (TOML has no null)."""

    length: NumberOrText = "30"
    aspect_ratio: str = "landscape"
    caption: bool | str = False
    avatar_id: NumberOrText = 127
    avatar_type: NumberOrText = 0
    voice_id: str = "en-US-ChristopherNeural"
    music_id: NumberOrText = ""
    script_style: str = "Storytime"
    language: str = "english"
    visual_style: str = ""
    video_name: str = ""
    override_script: str = ""
    webhook_url: str = ""


def _a_column(target: str) -> str:
    if target.strip().lower() not in CANONICAL_COLUMNS:
        raise ValueError(f"is not a catalog column; use one of {', '.join(CANONICAL_COLUMNS)}")
    return target


class Settings(_Section):
    api: ApiSettings = ApiSettings()
    retry: RetrySettings = RetrySettings()
    catalog: CatalogSettings = CatalogSettings()
    run: RunSettings = RunSettings()
    defaults: DefaultsSettings = DefaultsSettings()
    columns: dict[str, Annotated[str, AfterValidator(_a_column)]] = Field(default_factory=dict)


def load_settings(
    path: Path | None, overrides: Mapping[str, Any] | None = None, api_key: Secret | None = None
) -> Settings:
    """Reads a TOML file (the built-in defaults when None) and applies dotted-key overrides.

    Overrides whose value is None are ignored, so CLI options left unset do not count.
    `api_key`: the API key, masked in what a message quotes of a setting (pasted in the wrong one).
    """
    source = path or BUILTIN_CONFIG
    data: dict[str, Any] = {}
    if path is not None or source.exists():
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            raise ConfigError(f"{source}: no such config file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: is not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the config file ({exc.strerror})") from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        table = data.setdefault(section, {})
        if not isinstance(table, dict):  # `api = "..."`: the value is not shown, it may be a key
            kind = "a list" if isinstance(table, list) else "one value"
            raise ConfigError(
                f"{source}: {section} is {kind}, not a table; write its settings under a "
                f"[{section}] line"
            )
        table[key] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        given = {dotted for dotted, value in (overrides or {}).items() if value is not None}
        message = _describe(source, exc, given)
        raise ConfigError(api_key.scrub(message) if api_key else message) from None


def _describe(source: Path, exc: ValidationError, given: set[str]) -> str:
    """Each problem named by its key and value: in the file, or the option that gave it."""
    problems: list[str] = []
    options: list[str] = []
    named: set[str] = set()
    for error in exc.errors():
        # A setting is a section's key: what pydantic adds past it names a branch of a union
        # (`defaults.avatar_id.int`, `.str`), one problem with the setting.
        key = ".".join(str(part) for part in error["loc"][:2])
        if key in named:
            continue
        named.add(key)
        value = _shown(error.get("input"), key)
        if "." not in key and error["type"] == "model_type":
            problems.append(f"{key} is not a table; write its settings under a [{key}] line")
        elif error["type"] == "extra_forbidden":
            (options if key in given else problems).append(f"unknown setting '{key}'")
        elif error["type"] == "value_error":
            reason = str(error["ctx"]["error"])
            if key in given:
                options.append(f"{_option(key)} {value} {reason}")
            else:
                problems.append(f"{key} = {value} {reason}")
        elif key in given:
            options.append(f"{_option(key)} {value}: {error['msg']}")
        else:
            problems.append(f"'{key}' = {value}: {error['msg']}")
    parts = [f"{source}: " + "; ".join(problems)] if problems else []
    return "; ".join(parts + options)


# The [api] settings a message may show: the others (a key file's path, a base URL with its
# credentials) and a whole section written as one value (`api = "sk-..."`, a key pasted in the
# wrong place) may hold a secret.
_SHOWN_API: Final = frozenset(
    {"api.rate_limit", "api.concurrency", "api.connect_timeout", "api.read_timeout",
     "api.product_timeout"}
)  # fmt: skip


def _shown(value: object, key: str) -> str:
    """A setting's value as a message shows it: never one that may be a secret."""
    if "." not in key or (key.startswith("api.") and key not in _SHOWN_API):
        return "(not shown)"
    return repr(value)


_NO_VALUE: Final = MISSING_TEXTS | DATABASE_NULLS


def _check_default(name: str, value: object, read: object) -> None:
    """ValueError for a default that reads otherwise than earlier versions read it (a
    language tag they read by its first part: `nl_BE.UTF-8` was Dutch, now Flemish), which
    would change every row's request and pay for each again; and for a script that is a word
    for no value (`N/A`, which a cell holding it is), which was read out."""
    if name == "language" and read != (before := _language_before(value)) and before:
        raise ValueError(
            f"{payload.shown(value)} was read as {before} by earlier versions and is {read} now; "
            "write the language's name (every row's request would change)"
        )
    if name == "override_script" and isinstance(value, str) and value.strip() in _NO_VALUE:
        raise ValueError(
            f"{value!r} is a word for no value (a cell holding it is empty); leave the "
            "setting out for no script"
        )


def _language_before(value: object) -> str | None:
    try:
        return payload.language_as_earlier_versions_read(value)
    except ValueError:
        return None  # refused then: nothing was sent with it


def _option(key: str) -> str:
    """The command-line option (or variable) that sets a dotted setting."""
    option = "--" + key.rpartition(".")[2].replace("_", "-")
    return f"{option} (or JOGG_BASE_URL)" if key == "api.base_url" else option


def request_defaults(
    settings: Settings, source: Path | None, given: Collection[str] = ()
) -> payload.RequestDefaults:
    """Normalises each default with the same rules as catalog cells (so `9:16` works here too).
    `given`: the defaults an option set (a bad one is blamed on its option, not the file)."""
    raw = settings.defaults
    normalisers: dict[str, Callable[[object], object]] = {
        "length": payload.normalize_length,
        "aspect_ratio": payload.normalize_aspect_ratio,
        "caption": payload.normalize_caption,
        "avatar_id": payload.normalize_int_id,
        "avatar_type": payload.normalize_avatar_type,
        "voice_id": payload.normalize_text,
        "music_id": payload.normalize_int_id,
        "script_style": payload.normalize_script_style,
        "language": payload.normalize_language,
        "visual_style": payload.normalize_text,
        "video_name": str,
        "override_script": str,
        "webhook_url": payload.normalize_url,
    }
    values: dict[str, object] = {}
    for name, normalise in normalisers.items():
        value = getattr(raw, name)
        if value == "":
            values[name] = None
            continue
        try:
            values[name] = normalise(value)
            _check_default(name, value, values[name])
        except ValueError as exc:
            if name in given:
                raise ConfigError(f"{_option(name)} {exc}") from None
            raise ConfigError(f"{source or BUILTIN_CONFIG}: defaults.{name}: {exc}") from None
    for required in ("length", "aspect_ratio", "avatar_id", "script_style", "language"):
        if values[required] is None and required in given:
            raise ConfigError(f"{_option(required)} is empty; give a value (or leave it out)")
        if values[required] is None:
            raise ConfigError(f"{source or BUILTIN_CONFIG}: defaults.{required} must be set")
    return payload.RequestDefaults(**values)  # type: ignore[arg-type]


def read_api_key(settings: Settings, env: Mapping[str, str] | None = None) -> Secret:
    """JOGG_API_KEY wins; else the file named by api.key_file. Never from the command line.

    A key file may hold comments: its first line that is neither blank nor `#...` is the key.
    """
    env = os.environ if env is None else env
    if (known := _environment_key(env)) is not None:
        _refuse_key_in_settings(known, settings)
        return known
    if settings.api.key_file:
        path = Path(settings.api.key_file).expanduser()
        named = (
            f"api.key_file {path}"
            if _looks_like_a_path(settings.api.key_file)
            else (
                "api.key_file (not shown: it names no folder and no extension; is it the key "
                "itself? api.key_file names a file holding the key)"
            )
        )
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ConfigError(f"{named}: cannot read it ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{named}: not UTF-8 text") from None
        lines = (line.strip() for line in text.split("\n"))
        key = next((line for line in lines if line and not line.startswith("#")), "")
        if not key:
            raise ConfigError(f"{named}: holds no key (its lines are blank or # comments)")
        found = checked_key(key, named)
        _refuse_key_in_settings(found, settings)
        return found
    raise ConfigError(
        "no API key: set JOGG_API_KEY, or name a file holding it in the config as api.key_file "
        "(or use --sandbox to try jogg-batch without an account)"
    )


def _environment_key(env: Mapping[str, str]) -> Secret | None:
    text = env.get("JOGG_API_KEY", "").strip()
    return checked_key(text, "JOGG_API_KEY") if text else None


def _refuse_key_in_settings(key: Secret, settings: Settings) -> None:
    """ConfigError when a setting holds the key (pasted in the wrong one: a voice id, a rate):
    it would be sent as that value and written to the results and the state."""
    for section, values in settings.model_dump().items():
        for name, value in values.items():
            dotted = f"{section}.{name}"
            if dotted in _KEY_CHECKED_ELSEWHERE or not isinstance(value, str):
                continue
            if key.scrub(value) != value:
                raise ConfigError(
                    f"{dotted} holds the API key (not shown); the key goes in JOGG_API_KEY or "
                    "a file named by api.key_file, never in another setting"
                )


# Checked where they are read, with their own messages (`parse_base_url`, `read_api_key`).
_KEY_CHECKED_ELSEWHERE: Final = frozenset({"api.base_url", "api.key_file"})


def _looks_like_a_path(text: str) -> bool:
    """A file's name as people write one (a folder, `~`, or an extension), which a message may
    show; anything else in `api.key_file` may be the key pasted there, and is not shown."""
    return (
        "/" in text or "\\" in text or text.startswith("~") or bool(re.search(r"\.\w{1,8}$", text))
    )


def known_api_key(settings: Settings, env: Mapping[str, str] | None = None) -> Secret | None:
    """The API key when one is set (as `read_api_key` finds it), else None: for commands that
    never send it but keep it out of what servers make them record (`download`, `listen`)."""
    env = os.environ if env is None else env
    if env.get("JOGG_API_KEY", "").strip() or settings.api.key_file:
        return read_api_key(settings, env)
    return None


def parse_duration(text: str) -> float:
    """`6h`, `90m`, `45s`, `1h30m` -> seconds."""
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    for char in text.strip().lower():
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total += float(number) * units[char]
            number = ""
        else:
            raise ValueError(f"{text!r} is not a duration; write e.g. 6h, 90m or 1h30m")
    if number or total <= 0:
        raise ValueError(f"{text!r} is not a duration; write e.g. 6h, 90m or 1h30m")
    return total


def parse_until(text: str, now: datetime) -> float:
    """`06:30` -> the next 06:30 after `now`, as a unix time: in `now`'s zone, or, for a naive
    `now`, in this machine's local time with its daylight saving rules (a fixed offset taken
    at 01:15 would put 06:30 an hour off on the nights the clocks change)."""
    try:
        clock = datetime.strptime(text.strip(), "%H:%M").time()
    except ValueError:
        raise ValueError(f"{text!r} is not a time of day; write HH:MM, e.g. 06:30") from None
    return min(
        at
        for day in (now.date(), now.date() + timedelta(days=1))
        for at in _moments(datetime.combine(day, clock, tzinfo=now.tzinfo))
        if at > now.timestamp()
    )


def _moments(wall: datetime) -> set[float]:
    """The unix times a wall-clock time names: two on the night the clocks go back (01:15
    before the change, and after it: at the second 02:15, `--until 02:30` is 15 minutes
    away, not 45 minutes past), otherwise one. A time the clocks skip is taken as before."""
    first = wall.replace(fold=0).timestamp()
    second = wall.replace(fold=1).timestamp()
    shown = datetime.fromtimestamp(second, wall.tzinfo)
    if (shown.replace(tzinfo=None), shown.fold) == (wall.replace(tzinfo=None), 1):
        return {first, second}
    return {first}


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; made by `build_run_config` (`batch.configure`), taken by `run`."""

    catalog: Location  # a local path or an object in a store (batch.storage)
    results: Location
    state: StateLocation
    catalog_options: CatalogOptions
    base_url: str
    api_key: Secret
    rate: RateLimit | None
    concurrency: int
    timeouts: Timeouts
    retry: RetryPolicy
    reconcile_tag: bool = True
    settle_seconds: float = 300.0  # see batch.joggai.reconcile
    keep_runs: int = 7  # runs whose row outcomes the ledger keeps (batch.store.maintenance)
    claim_seconds: float = 60.0  # a shared state's claim lease (batch.store.fleet)
    legacy_state: Path | None = None  # a 0.1 state beside the results, merged into `state`
    # The results file the state records the run as writing, when not `results`: `retry` runs
    # a temporary catalog whose outcomes it merges into the file it was given.
    recorded_results: Location | None = None
    retried_catalog: str | None = None  # `retry`: the catalog of the file's rows, as recorded
    dry_run: bool = False
    force: bool = False
    retry_permanent: bool = False
    resubmit_unknown: bool = False
    offline: bool = False  # skip the account check and the look-up pre-flight
    refresh_lookups: bool = False
    max_videos: int | None = None
    deadline: float | None = None
    shutdown_grace: float = 30.0
    results_interval: float = 30.0
    progress_interval: float = 60.0
    summary_json: Path | None = None
    progress_bar: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def default_results_path(catalog: Location) -> Location:
    """`catalog.results.csv` beside the catalog; `catalog.csv.results.csv` for `catalog.csv.gz`
    (written uncompressed, for people to open), not the results of `catalog.csv` beside it,
    which `gzip -k` leaves there."""
    return catalog.with_name(catalog.stem + ".results.csv")


def catalog_options(
    settings: Settings,
    source: Path | None,
    *,
    fmt: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    given: Collection[str] = (),
) -> CatalogOptions:
    chosen_format = fmt or settings.catalog.format or None
    delimiter = delimiter or settings.catalog.delimiter or None
    if delimiter is not None:
        delimiter = delimiter_character(delimiter)
    return CatalogOptions(
        format=chosen_format,  # type: ignore[arg-type]
        delimiter=delimiter,
        columns=dict(settings.columns),
        defaults=request_defaults(settings, source, given),
        row_key=settings.catalog.row_key or None,
        batch_rows=settings.catalog.batch_rows,
        sheet=sheet or settings.catalog.sheet or None,
        columns_from=str(source or BUILTIN_CONFIG),
    )


def rate_limit(text: str) -> RateLimit | None:
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise ConfigError(f"rate limit: {exc}") from None


@dataclass(frozen=True)
class Overrides:
    """What a caller (a CLI option, a Python caller) sets over the config file, and the flags of
    one run. None means "not given": the config file decides."""

    config_path: Path | None = None
    results: Location | None = None
    state: StateLocation | None = None
    base_url: str | None = None  # else JOGG_BASE_URL, else the config file
    rate_limit: str | None = None
    concurrency: int | None = None
    input_format: str | None = None  # csv, parquet or jsonl; else by extension
    delimiter: str | None = None
    sheet: str | None = None  # the worksheet of a spreadsheet catalog
    fields: Mapping[str, object] = field(default_factory=dict)  # request field defaults
    dry_run: bool = False
    offline: bool = False
    refresh_lookups: bool = False
    max_videos: int | None = None
    deadline: float | None = None  # unix time after which nothing new is sent
    force: bool = False
    retry_permanent: bool = False
    resubmit_unknown: bool = False
    summary_json: Path | None = None
    progress_bar: bool = False

    def __post_init__(self) -> None:
        # A Python caller passes paths as text as often as not: they become what the CLI gives.
        places = {
            "config_path": Path,
            "results": parse_location,
            "state": state_location,
            "summary_json": Path,
        }
        if isinstance(self.summary_json, str) and "://" in self.summary_json:
            raise ConfigError(
                f"summary_json {self.summary_json!r}: is written on this machine only; name a "
                "local file"
            )
        for name, convert in places.items():
            value = getattr(self, name)
            if isinstance(value, str | os.PathLike):
                # `~/out.csv` from a notebook: on a command line the shell expands it.
                text = os.path.expanduser(os.fspath(value))
                if not isinstance(value, Path) or text != os.fspath(value):
                    object.__setattr__(self, name, convert(text))
        # The type checker guards typed callers; others (a notebook, a YAML-driven DAG) get a
        # BatchError naming the option, not a TypeError from deep in a run.
        if self.fields is None:  # None means "not given", as everywhere here
            object.__setattr__(self, "fields", {})
        for name, (kinds, words) in _OVERRIDE_TYPES.items():
            value = getattr(self, name)
            if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
                raise ConfigError(f"{name} {value!r}: takes {words}, not {type(value).__name__}")
        if self.deadline is not None and not math.isfinite(self.deadline):
            raise ConfigError(f"deadline {self.deadline!r}: takes a unix time (seconds)")
        for name in _FLAGS:
            value = getattr(self, name)
            # `force="false"` from a YAML-driven DAG is true to Python: it paid for every row
            # again. A flag is True or False (a 0 or 1 too, as NumPy's and pandas' give it;
            # None, as everywhere here, is "not given").
            if value is None:
                value = False
            if value not in (True, False) or isinstance(value, str):
                raise ConfigError(
                    f"{name} {value!r}: takes True or False, not {type(value).__name__}"
                )
            object.__setattr__(self, name, bool(value))


# What the Overrides that are not flags take (None aside), and that in words.
_OVERRIDE_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "config_path": (Path, "a path"),
    "results": ((Path, ObjectURL), "a path or a store's URL"),
    "state": ((Path, DatabaseURL), "a path or a postgresql:// URL"),
    "summary_json": (Path, "a path"),
    "base_url": (str, "text"),
    "rate_limit": (str, "text (20/min)"),
    "concurrency": (int, "a whole number"),
    "input_format": (str, "text"),
    "delimiter": (str, "text"),
    "sheet": (str, "text"),
    "fields": (Mapping, "a mapping of field to value"),
    "max_videos": (int, "a whole number"),
    "deadline": ((int, float), "a unix time (seconds)"),
}


_FLAGS: Final = (
    "dry_run", "offline", "refresh_lookups", "force", "retry_permanent", "resubmit_unknown",
    "progress_bar",
)  # fmt: skip


CliOverrides = Overrides  # the 0.2 name, for callers not yet renamed


def resolve(overrides: Overrides, env: Mapping[str, str] | None = None) -> Settings:
    """The one settings path of every command: built-in defaults < config file < JOGG_BASE_URL
    < overrides."""
    env = os.environ if env is None else env
    dotted: dict[str, Any] = {
        "api.base_url": overrides.base_url or env.get("JOGG_BASE_URL") or None,
        "api.rate_limit": overrides.rate_limit,
        "api.concurrency": overrides.concurrency,
    }
    dotted.update({f"defaults.{name}": value for name, value in overrides.fields.items()})
    try:
        key = _environment_key(env)
    except ConfigError:
        key = None  # refused by the commands that send it (`read_api_key`), not by the others
    settings = load_settings(overrides.config_path, dotted, key)
    if key is not None:
        _refuse_key_in_settings(key, settings)
    return settings


def given_state(
    overrides: Overrides, settings: Settings, env: Mapping[str, str]
) -> StateLocation | None:
    """`--state`, else JOGG_STATE_URL, else `run.state`; None: the account's own ledger."""
    if overrides.state is not None:
        return overrides.state
    value = env.get("JOGG_STATE_URL", "").strip() or settings.run.state
    return state_location(value) if value else None


def timeouts(settings: Settings) -> Timeouts:
    api = settings.api
    return Timeouts(
        connect=api.connect_timeout, read=api.read_timeout, product_read=api.product_timeout
    )


def build_run_config(
    catalog: Location,
    overrides: Overrides | None = None,
    *,
    env: Mapping[str, str] | None = None,
    api_key: Secret | None = None,
) -> RunConfig:
    """Merges built-in defaults, the config file, environment and overrides into one RunConfig.

    `api_key`: this key instead of JOGG_API_KEY or `api.key_file` (a sandbox's, say)."""
    env = os.environ if env is None else env
    given = overrides or Overrides()
    if given.max_videos is not None and given.max_videos < 1:  # as the CLI's --max-videos
        raise ConfigError(f"max_videos {given.max_videos}: use 1 or more (None: no cap)")
    settings = resolve(given, env)
    results = given.results or default_results_path(catalog)
    api = settings.api
    key = api_key if api_key is not None else read_api_key(settings, env)
    parse_base_url(api.base_url, key)  # refused now, before the config (and its repr) holds it
    state = choose_state(
        given_state(given, settings, env),
        results if isinstance(results, Path) else None,  # no 0.1 state beside a stored object
        api.base_url,
        key.reveal(),
    )
    return RunConfig(
        catalog=catalog,
        results=results,
        state=state.path,
        legacy_state=state.legacy,
        catalog_options=catalog_options(
            settings,
            given.config_path,
            fmt=given.input_format,
            delimiter=given.delimiter,
            sheet=given.sheet,
            given=[name for name, value in given.fields.items() if value is not None],
        ),
        base_url=api.base_url.rstrip("/"),
        api_key=key,
        rate=rate_limit(api.rate_limit),
        concurrency=api.concurrency,
        timeouts=timeouts(settings),
        retry=RetryPolicy(
            max_attempts=settings.retry.max_attempts,
            base_delay=settings.retry.base_delay,
            max_delay=settings.retry.max_delay,
        ),
        reconcile_tag=settings.run.reconcile_tag,
        settle_seconds=settings.run.settle_seconds,
        keep_runs=settings.run.keep_runs,
        claim_seconds=settings.run.claim_seconds,
        shutdown_grace=settings.run.shutdown_grace,
        results_interval=settings.run.results_interval,
        progress_interval=settings.run.progress_interval,
        dry_run=given.dry_run,
        force=given.force,
        retry_permanent=given.retry_permanent,
        resubmit_unknown=given.resubmit_unknown,
        offline=given.offline,
        refresh_lookups=given.refresh_lookups,
        max_videos=given.max_videos,
        deadline=given.deadline,
        summary_json=given.summary_json,
        progress_bar=given.progress_bar,
    )


@dataclass(frozen=True)
class TrackConfig:
    """What polling render statuses needs; a `RunConfig` serves as one too."""

    state: StateLocation
    base_url: str
    api_key: Secret
    timeouts: Timeouts
    results: Location | None = None
    legacy_state: Path | None = None  # a 0.1 state beside the results, merged into `state`


def ledger_location(
    overrides: Overrides | None = None, *, env: Mapping[str, str] | None = None
) -> StateLocation:
    """The state `jogg-batch state` looks after, chosen as a run chooses it: `--state`, else
    JOGG_STATE_URL, else `run.state`, else the ledger of the account (JOGG_BASE_URL and the
    key), which must exist."""
    env = os.environ if env is None else env
    given = overrides or Overrides()
    settings = resolve(given, env)
    chosen = given_state(given, settings, env)
    accounts_ledger = chosen is None
    if chosen is None:
        key = read_api_key(settings, env)
        chosen = choose_state(None, None, settings.api.base_url, key.reveal()).path
        if isinstance(chosen, Path) and not chosen.is_file():
            raise StateError(
                f"no ledger of this account at {chosen}: nothing was run with this key and "
                "base URL on this machine; pass --state PATH for a state kept elsewhere"
            )
    elif isinstance(chosen, Path) and not chosen.is_file():
        raise StateError(f"{chosen}: no state database here; check the path")
    if isinstance(chosen, Path) and not _file_holds_a_ledger(chosen):
        # Opened as a state, the file would be made a new, empty ledger in silence.
        raise StateError(
            f"{chosen}: the account's ledger holds no tables (emptied or damaged); put it back "
            "from a backup (a run would start a new one, and look up in the account's listing "
            "what was sent)"
            if accounts_ledger
            else f"{chosen}: this file holds no jogg-batch ledger; check the path"
        )
    if isinstance(chosen, DatabaseURL) and not _holds_a_ledger(chosen):
        # Opening it as a state would make the tables there (a typo in the database's name).
        raise StateError(f"{chosen}: this database holds no jogg-batch ledger; check its name")
    return chosen


def _file_holds_a_ledger(path: Path) -> bool:
    """Whether a SQLite file has the ledger's tables (read only: looking makes nothing)."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        ) as db:
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"
            ).fetchone()
    except sqlite3.OperationalError as exc:  # a full disk (no room for its -shm), no access
        raise StateError(f"{path}: cannot read the state database ({exc})") from None
    except sqlite3.Error:  # not a database at all
        return False
    return found is not None


def _holds_a_ledger(url: DatabaseURL) -> bool:
    database = PostgresDatabase(url, read_only=True)
    try:
        row = database.execute("SELECT to_regclass('jobs') IS NOT NULL").fetchone()
    finally:
        database.close()
    return bool(row and row[0])


def build_track_config(
    results: Location | None,
    overrides: Overrides | None = None,
    *,
    env: Mapping[str, str] | None = None,
    api_key: Secret | None = None,
) -> TrackConfig:
    """The state to poll: `overrides.state`, else the account's ledger (which must exist);
    without `results`, every video of it that is not final."""
    env = os.environ if env is None else env
    given = overrides or Overrides()
    if results is not None and not storage.is_file(results):
        raise StateError(f"{results}: no such results file; check the path")
    if isinstance(given.state, Path) and not given.state.is_file():
        raise StateError(f"{given.state}: no state database here; check the path")
    settings = resolve(given, env)
    key = api_key if api_key is not None else read_api_key(settings, env)
    beside = results if isinstance(results, Path) else None  # where a 0.1 state may be
    chosen = choose_state(
        given_state(given, settings, env), beside, settings.api.base_url, key.reveal()
    )
    if isinstance(chosen.path, Path) and not chosen.path.is_file() and chosen.legacy is None:
        raise StateError(
            f"no ledger of this account at {chosen.path}: nothing was run with this key and "
            "base URL on this machine; pass --state PATH for a state kept elsewhere"
        )
    return TrackConfig(
        state=chosen.path,
        base_url=settings.api.base_url.rstrip("/"),
        api_key=key,
        timeouts=timeouts(settings),
        results=results,
        legacy_state=chosen.legacy,
    )
