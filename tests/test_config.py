"""Settings: file, CLI and environment precedence; validation that names the key."""

from __future__ import annotations

import re
import time
import tomllib
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import batch
from batch.cli import run as cli_run
from batch.config import (
    BUILTIN_CONFIG,
    Overrides,
    Secret,
    Settings,
    build_run_config,
    default_results_path,
    load_settings,
    parse_duration,
    parse_until,
    read_api_key,
    request_defaults,
)
from batch.errors import ConfigError
from batch.joggai.quota import RateLimit
from batch.storage import Location, ObjectURL

ROOT = Path(__file__).parents[1]


def test_the_documented_config_is_the_packaged_one() -> None:
    """configs/default.toml, the copy people read, is byte for byte batch/default.toml, the one an
    installed wheel reads."""
    assert (ROOT / "configs" / "default.toml").read_bytes() == BUILTIN_CONFIG.read_bytes()
    assert BUILTIN_CONFIG.parent == Path(batch.__file__).parent


def test_the_packaged_config_states_every_model_default() -> None:
    """batch/default.toml gives every setting, each with the value the model defaults to."""
    text = tomllib.loads(BUILTIN_CONFIG.read_text())
    assert load_settings(None) == Settings()
    for name, section in Settings.model_fields.items():
        if name != "columns":
            assert set(text[name]) == set(section.annotation.model_fields), name  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("catalog", "results"),
    [
        (Path("in/catalog.csv"), Path("in/catalog.results.csv")),
        (Path("in/catalog.csv.gz"), Path("in/catalog.csv.results.csv")),
        (Path("in/catalog.TSV.GZ"), Path("in/catalog.TSV.results.csv")),
        (ObjectURL("s3://b/in/c.jsonl.gz"), ObjectURL("s3://b/in/c.jsonl.results.csv")),
    ],
)
def test_a_gzip_catalogs_results_are_not_those_of_the_file_it_was_packed_from(
    catalog: Location, results: Location
) -> None:
    """`catalog.csv.gz` writes `catalog.csv.results.csv` (uncompressed, for people to open):
    `gzip -k` leaves `catalog.csv` beside it, whose results (rows not attempted, to retry)
    `catalog.results.csv` would have overwritten."""
    assert default_results_path(catalog) == results


def test_cli_beats_config_file_beats_built_in(tmp_path: Path) -> None:
    """Precedence: CLI option > config file > built-in default."""
    config = tmp_path / "c.toml"
    config.write_text('[api]\nrate_limit = "10/min"\nconcurrency = 2\n[defaults]\nlength = "60"\n')
    built = build_run_config(
        tmp_path / "cat.csv",
        Overrides(config_path=config, rate_limit="5/s", fields={"aspect_ratio": "9:16"}),
        env={}, api_key=Secret("k"),
    )  # fmt: skip
    assert built.rate == RateLimit(5, 1.0)  # CLI
    assert built.concurrency == 2  # file
    assert built.catalog_options.defaults.length == "60"  # file
    assert built.catalog_options.defaults.aspect_ratio == "portrait"  # CLI, normalised
    assert built.catalog_options.defaults.language == "english"  # built-in
    assert built.results == tmp_path / "cat.results.csv"
    assert isinstance(built.state, Path)
    assert built.state.parent.name == "ledgers"  # the account's ledger, not a file's
    assert built.legacy_state is None


def test_base_url_from_environment_unless_given(tmp_path: Path) -> None:
    """JOGG_BASE_URL points runs elsewhere; --base-url wins over it."""
    env = {"JOGG_BASE_URL": "http://env.example/"}
    from_env = build_run_config(tmp_path / "c.csv", Overrides(), env=env, api_key=Secret("k"))
    given = build_run_config(
        tmp_path / "c.csv", Overrides(base_url="http://cli"), env=env, api_key=Secret("k")
    )
    assert (from_env.base_url, given.base_url) == ("http://env.example", "http://cli")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[api]\nconcurency = 3\n", "unknown setting 'api.concurency'"),
        ("[nope]\nx = 1\n", "unknown setting 'nope'"),
        ("[api]\nconcurrency = 0\n", "'api.concurrency' = 0"),
        ("[api\n", "not valid TOML"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path: Path, toml: str, message: str) -> None:
    """Every config mistake is an error that names the key."""
    config = tmp_path / "c.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings(config)


def test_bad_default_value_names_the_setting(tmp_path: Path) -> None:
    """Defaults are normalised like catalog cells, and a bad one says which."""
    config = tmp_path / "c.toml"
    config.write_text('[defaults]\nlength = "45"\n')
    with pytest.raises(ConfigError, match=r"defaults\.length: '45' is not a video length"):
        request_defaults(load_settings(config), config)


def test_api_key_from_environment_or_key_file(tmp_path: Path) -> None:
    """JOGG_API_KEY wins; a key file works; the key never shows in a repr."""
    key_file = tmp_path / "key"
    key_file.write_text("sk-file\n")
    settings = load_settings(None, {"api.key_file": str(key_file)})
    assert read_api_key(settings, {"JOGG_API_KEY": "sk-env"}).reveal() == "sk-env"
    key = read_api_key(settings, {})
    assert key.reveal() == "sk-file"
    assert "sk-file" not in repr(key)
    with pytest.raises(ConfigError, match="set JOGG_API_KEY"):
        read_api_key(load_settings(None), {})


def test_a_settings_or_key_file_saved_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    """PowerShell 5 and old Notepad write "UTF-8" with a byte order mark; it is no part of the
    settings, nor of the key."""
    key_file = tmp_path / "key"
    key_file.write_bytes(b"\xef\xbb\xbfsk-file\r\n")
    config = tmp_path / "nightly.toml"
    config.write_bytes(f'\ufeff[api]\nkey_file = "{key_file}"\n'.encode())
    assert read_api_key(load_settings(config), {}).reveal() == "sk-file"


def test_durations_and_times_of_day() -> None:
    """--max-duration and --until as people write them."""
    assert parse_duration("6h") == 21600
    assert parse_duration("1h30m") == 5400
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    now = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)
    assert parse_until("06:30", now) == datetime(2026, 11, 27, 6, 30, tzinfo=UTC).timestamp()
    assert parse_until("23:30", now) == datetime(2026, 11, 26, 23, 30, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("fold", [0, 1])
def test_until_on_the_night_the_clocks_go_back_is_the_next_such_time(fold: int) -> None:
    """Europe/Berlin, 2026-10-25, 02:15 before or after the clocks go back: `--until 02:30` is 15
    minutes away either time (after the change it was the first 02:30, 45 minutes past, and
    the run sent nothing). On the night they go forward, 02:30 does not exist: 03:30 is taken."""
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 10, 25, 2, 15, tzinfo=berlin, fold=fold)
    assert parse_until("02:30", now) - now.timestamp() == 15 * 60
    spring = datetime(2026, 3, 29, 1, 15, tzinfo=berlin)
    assert parse_until("02:30", spring) - spring.timestamp() == 75 * 60


@pytest.mark.parametrize(
    ("text", "told"),
    [
        # Both branches of the setting's type fail: one problem, named by the setting (not
        # `defaults.avatar_id.int` and `.str`), its value shown.
        (
            "[defaults]\navatar_id = 127.5\n",
            "'defaults.avatar_id' = 127.5: Input should be a valid integer, got a number with "
            "a fractional part",
        ),
        # The key and the forms to use.
        (
            '[api]\nrate_limit = "20 per minute"\n',
            "api.rate_limit = '20 per minute' is not a rate; write N/s, N/min or N/h with N "
            "above 0 (e.g. 20/min), or none",
        ),
    ],
    ids=["value of another type", "bad rate"],
)
def test_a_bad_config_value_is_one_problem_naming_the_file_and_setting(
    tmp_path: Path, text: str, told: str
) -> None:
    """A setting the file gives wrong: one message, naming the file, the setting and its value."""
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    assert str(raised.value) == f"{config}: {told}"


def test_a_bad_rate_from_the_command_line_names_the_option(tmp_path: Path) -> None:
    """The same mistake made with --rate-limit names the option, not a file it is not in."""
    with pytest.raises(ConfigError, match=r"^--rate-limit '20 per minute' is not a rate"):
        load_settings(None, {"api.rate_limit": "20 per minute"})


def test_a_bad_request_default_from_an_option_names_the_option(tmp_path: Path) -> None:
    """`--length 45` (or Overrides.fields) names the option, not the settings file it is not
    in; a bad value in the file still names the file."""
    config = tmp_path / "c.toml"
    config.write_text('[defaults]\naspect_ratio = "4:3"\n')
    given = Overrides(fields={"length": "45"})
    with pytest.raises(ConfigError, match=r"^--length '45' is not a video length"):
        build_run_config(tmp_path / "c.csv", given, api_key=Secret("k"))
    with pytest.raises(ConfigError, match=r"c\.toml: defaults\.aspect_ratio: '4:3'"):
        build_run_config(tmp_path / "c.csv", Overrides(config_path=config), api_key=Secret("k"))
    empty = Overrides(fields={"length": ""})  # `--length ""`: not the built-in file's doing
    with pytest.raises(ConfigError, match=r"^--length is empty; give a value"):
        build_run_config(tmp_path / "c.csv", empty, api_key=Secret("k"))


def test_a_column_mapping_to_no_catalog_column_names_file_and_key(tmp_path: Path) -> None:
    """[columns] sku = "productid": the file, the key and the columns there are."""
    config = tmp_path / "c.toml"
    config.write_text('[columns]\nsku = "productid"\n')
    with pytest.raises(ConfigError, match=r"c\.toml: columns\.sku = 'productid' is not a catalog"):
        load_settings(config)


def test_delimiter_setting_is_one_character_or_tab(tmp_path: Path) -> None:
    """catalog.delimiter: "tab" means a tab; two characters are an error naming the key."""
    config = tmp_path / "c.toml"
    config.write_text('[catalog]\ndelimiter = "tab"\n')
    built = build_run_config(tmp_path / "c.csv", Overrides(config_path=config), env={},
                             api_key=Secret("k"))  # fmt: skip
    assert built.catalog_options.delimiter == "\t"
    config.write_text('[catalog]\ndelimiter = ";;"\n')
    with pytest.raises(ConfigError, match=r"c\.toml: catalog\.delimiter = ';;' is not one char"):
        load_settings(config)


@pytest.mark.parametrize("spelt", ["\\001", "\\x01", "\\u0001", "\x01"])
def test_a_control_character_delimiter_is_given_as_an_escape(tmp_path: Path, spelt: str) -> None:
    """Hive's Ctrl-A, which no one can type on a command line, is given as Hive's DDL writes it
    (`'\\001'`) or as a hex escape, in the settings file or --delimiter; a wrong escape is
    still refused."""
    config = tmp_path / "c.toml"
    if spelt.isprintable():  # TOML holds no control character
        config.write_text(f"[catalog]\ndelimiter = '{spelt}'\n")
        built = build_run_config(tmp_path / "c.csv", Overrides(config_path=config), env={},
                                 api_key=Secret("k"))  # fmt: skip
        assert built.catalog_options.delimiter == "\x01"
    built = build_run_config(tmp_path / "c.csv", Overrides(delimiter=spelt), env={},
                             api_key=Secret("k"))  # fmt: skip
    assert built.catalog_options.delimiter == "\x01"
    config.write_text("[catalog]\ndelimiter = '\\01'\n")
    with pytest.raises(ConfigError, match=r"is not one char"):
        load_settings(config)


@pytest.mark.parametrize(
    ("text", "told"),
    [
        ('api = "https://api.jogg.ai"\n', "api is one value"),
        ('defaults = ["x"]\n', "defaults is a list"),
    ],
)
def test_a_section_written_as_a_value_is_a_config_error_with_an_option_given(
    tmp_path: Path, text: str, told: str
) -> None:
    """`api = "..."` with an option of that section given (--rate-limit, JOGG_BASE_URL,
    --length) was a TypeError: exit 1 and a traceback. It is a ConfigError naming the file and
    the section, and never the value (it may be a key pasted there)."""
    config = tmp_path / "c.toml"
    config.write_text(text)
    fields = Overrides(config_path=config, rate_limit="10/min", fields={"length": "30"})
    with pytest.raises(ConfigError) as caught:
        build_run_config(tmp_path / "c.csv", fields, env={}, api_key=Secret("k"))
    assert str(caught.value).startswith(f"{config}: {told}, not a table; write its settings")
    assert "jogg.ai" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [("[defaults]\navatar_id = true\n", "defaults.avatar_id"),
     ("[defaults]\nlength = true\n", "defaults.length"),
     ("[api]\nconcurrency = true\n", "api.concurrency"),
     ("[run]\nsettle_seconds = false\n", "run.settle_seconds")],
)  # fmt: skip
def test_true_or_false_for_a_number_is_refused_not_read_as_one(
    tmp_path: Path, text: str, key: str
) -> None:
    """pydantic reads `true` as 1: `avatar_id = true` sent every row without an avatar cell
    with avatar 1. A number setting given true or false is refused, naming it."""
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=rf"{key} = (True|False) is true or false, not a number"):
        load_settings(config)
    with pytest.raises(ConfigError, match="is true or false, not a number"):
        build_run_config(tmp_path / "c.csv", Overrides(fields={"avatar_id": True}), env={},
                         api_key=Secret("k"))  # fmt: skip


@pytest.mark.parametrize(
    ("setting", "told"),
    [
        ('language = "nl_BE.UTF-8"', "was read as dutch by earlier versions and is flemish now"),
        ('language = "zh-yue"', "was read as chinese by earlier versions and is cantonese now"),
        ('override_script = "N/A"', "'N/A' is a word for no value"),
        ('override_script = "NULL"', "'NULL' is a word for no value"),
    ],
)
def test_a_default_read_otherwise_or_meaning_no_value_is_refused(
    tmp_path: Path, setting: str, told: str
) -> None:
    """A default language tag now read by all its parts would change every row's request
    (paid again); a script `N/A` was read out, where a cell holding it is empty: refused,
    saying what to write."""
    config = tmp_path / "c.toml"
    config.write_text(f"[defaults]\n{setting}\n")
    with pytest.raises(ConfigError, match=re.escape(told)):
        build_run_config(tmp_path / "c.csv", Overrides(config_path=config), env={},
                         api_key=Secret("k"))  # fmt: skip


def test_a_config_path_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    """A folder or a non-UTF-8 file given as --config: the path and why, no traceback."""
    with pytest.raises(ConfigError, match=r"cannot read the config file"):
        load_settings(tmp_path)
    latin = tmp_path / "c.toml"
    latin.write_bytes(b'[defaults]\nvideo_name = "Caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"c\.toml: is not UTF-8 text"):
        load_settings(latin)


@pytest.mark.parametrize("day", [date(2027, 3, 28), date(2026, 10, 25)])  # spring, autumn
def test_until_keeps_the_wall_clock_on_the_nights_the_clocks_change(
    monkeypatch: pytest.MonkeyPatch, day: date
) -> None:
    """`run --until 06:30` from the README's 01:15 cron start ends at 06:30 local on the nights
    the clocks change too (not at the offset 01:15 had)."""
    cron_start = datetime(day.year, day.month, day.day, 1, 15)

    class Clock(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Clock:
            moment = cls.combine(cron_start.date(), cron_start.time())
            return moment if tz is None else moment.astimezone(tz)

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    monkeypatch.setattr(cli_run, "datetime", Clock)
    try:
        deadline = cli_run._deadline(None, "06:30")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert deadline is not None
    local = datetime.fromtimestamp(deadline, ZoneInfo("Europe/Berlin"))
    assert (local.date(), local.hour, local.minute) == (day, 6, 30)
