"""JSON from servers and senders not trusted: no value in it breaks what reads it."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from batch import untrusted
from batch.follow.polling import error_text, video_update
from batch.follow.webhook import event_time
from batch.joggai.client import ApiOutcome, JoggClient, parse_seconds

HUGE = "1" + "0" * 400  # valid JSON; float() of it as an int overflows


async def create_answered(body: bytes) -> ApiOutcome:
    """A create's outcome when the server answers 200 with `body`."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    async with JoggClient(
        "https://api.example.test", "sk-test", transport=httpx.MockTransport(answer)
    ) as client:
        return await client.create_video({"product_id": "NTQ0MTkzNjg"})


def test_an_integer_of_hundreds_of_digits_is_read_as_an_infinite_float() -> None:
    """Every reader of a number refuses infinity; none meets the OverflowError of `float()`."""
    value = untrusted.loads(f'{{"total": {HUGE}, "id": 1234567890123456789}}')
    assert value["total"] == math.inf
    assert value["id"] == 1234567890123456789  # an int64 id stays exact


def test_a_lone_surrogate_is_read_as_a_replacement_character() -> None:
    """`\\udc00` is valid JSON but text no database holds; a pair is one character, kept."""
    value = untrusted.loads(rb'{"video_id": "v\udc00", "t": ["\ud83d\ude00", {"k\ud800": 1}]}')
    assert value == {"video_id": "v\ufffd", "t": ["\U0001f600", {"k\ufffd": 1}]}


@pytest.mark.parametrize("depth", [65, 900, 30_000])
def test_json_nested_past_any_answer_is_refused_as_no_answer(depth: int) -> None:
    """A list nested hundreds or thousands deep is valid JSON that breaks a recursive reader
    (a RecursionError, Python's own at about 1,000): a ValueError, as broken JSON."""
    with pytest.raises(ValueError, match="nested over 64 deep"):
        untrusted.loads('{"data": {"video_id": "v1", "x": ' + "[" * depth + "]" * depth + "}}")
    kept = untrusted.loads("[" * 64 + "1" + "]" * 64)  # as deep as may be
    for _ in range(64):
        (kept,) = kept
    assert kept == 1


@pytest.mark.anyio
@pytest.mark.parametrize("deep", [900, 30_000])
async def test_a_create_answer_nested_thousands_deep_is_unknown(deep: int) -> None:
    """Such an answer proves nothing: the request may have been accepted, so it is uncertain
    (looked up in the listing before any resend), not a traceback."""
    body = '{"code": 0, "data": {"video_id": "v1", "x": ' + "[" * deep + "]" * deep + "}}"
    outcome = await create_answered(body.encode())
    assert outcome.kind == "unknown"


@pytest.mark.parametrize("text", ["\u00b2", "1" * 19, "12a", "", "-1"])
def test_a_whole_number_is_decimal_digits_and_not_too_many(text: str) -> None:
    """`²` passes `str.isdigit` but not `int()`; 19 digits are no code or count."""
    assert untrusted.whole_number(text) is None


def test_a_whole_number_is_read() -> None:
    assert untrusted.whole_number(" 40000 ") == 40000


@pytest.mark.anyio
async def test_a_create_answer_with_hostile_values_is_read_without_a_traceback() -> None:
    """A created video whose answer holds a surrogate in its id and a 401-digit retryAfter:
    accepted, its id stored as text a database holds, the retryAfter ignored."""
    body = (
        f'{{"code": 0, "msg": "ok", "retryAfter": {HUGE}, "data": {{"video_id": "v\\udc00"}}}}'
    ).encode()
    outcome = await create_answered(body)
    assert outcome.kind == "ok"
    assert outcome.data == {"video_id": "v\ufffd"}
    assert outcome.retry_after is None


@pytest.mark.anyio
@pytest.mark.parametrize("code", ['"\u00b2"', HUGE])
async def test_an_envelope_code_that_is_no_number_is_a_malformed_answer(code: str) -> None:
    """A code `²` (a digit to `str.isdigit`) or of 401 digits: the answer is unknown."""
    outcome = await create_answered(f'{{"code": {code}, "msg": "x"}}'.encode())
    assert outcome.kind == "unknown"


@pytest.mark.parametrize("stamp", ["5" * 5000, "\u00b2", math.inf])
def test_a_webhook_timestamp_that_is_no_time_is_none(stamp: object) -> None:
    """A 5000-digit string (past Python's 4,300-digit `int()`), `²`, infinity: no time."""
    assert event_time({"timestamp": stamp}) is None


def test_seconds_of_hundreds_of_digits_are_no_seconds() -> None:
    """A listing's `total` or a `retryAfter` as an int past a float's range: not a number."""
    assert parse_seconds(10**400) is None


@pytest.mark.anyio
async def test_a_server_message_reaches_no_file_with_a_terminal_escape() -> None:
    """A refusal's text (stored, written to the results file) has its controls written out."""

    outcome = await create_answered(b'{"code": 40000, "msg": "bad\\u001b]0;pwned\\u0007\\n"}')
    assert outcome.message == "bad\\x1b]0;pwned\\x07\\n"


def test_a_render_failure_reason_has_its_controls_written_out() -> None:
    """Every shape of a failed render's reason: no raw control character or bidi override."""
    assert error_text({"error": {"code": 1, "message": "a\u202eb"}}) == "1: a\\u202eb"
    assert error_text({"error": "x\ry"}) == "x\\ry"
    assert error_text({"err_msg": "\x1b[2J"}) == "\\x1b[2J"
    assert error_text({}) is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "given",
    ["\x1b]0;pwned\x07\x1b[2J", 'v1\n{"level": "error"}', "v" * 300, "v 1", "..", "."],
)
async def test_a_created_video_id_that_is_no_id_is_an_unknown_answer(given: str) -> None:
    """An id holding a terminal's escape sequence, a line break, a space, or hundreds of
    characters never reaches the ledger or the results file, nor `..` a status URL's path
    (`/v2/product_video/..` is `/v2`): the create was accepted (and charged), so the answer is
    `unknown`, for the listing to settle."""
    body = json.dumps({"code": 0, "msg": "ok", "data": {"video_id": given}})
    outcome = await create_answered(body.encode())
    assert outcome.kind == "unknown"
    assert outcome.message.startswith("accepted, but the video_id returned (")
    assert outcome.message.endswith(") is no JoggAI id")
    assert "\x1b" not in outcome.message
    assert "\n" not in outcome.message


@pytest.mark.anyio
async def test_a_created_video_id_given_as_a_number_is_its_digits() -> None:
    """An id the server gives as a number is kept as its digits."""
    outcome = await create_answered(b'{"code": 0, "msg": "ok", "data": {"video_id": 123456}}')
    assert (outcome.kind, outcome.data) == ("ok", {"video_id": "123456"})


@pytest.mark.parametrize(
    ("given", "kept"),
    [("https://res.jogg.ai/v1.mp4", "https://res.jogg.ai/v1.mp4"),
     ("http://127.0.0.1:8787/v1.mp4", "http://127.0.0.1:8787/v1.mp4"),
     ("https://res.jogg.ai/v1.mp4\x1b]0;pwned\x07", None), ("https://res.jogg.ai/a b.mp4", None),
     ("javascript:alert(1)", None), ("https://res.jogg.ai/\u202egpj.exe", None),
     ("https://res.jogg.ai/" + "a" * 9000, None), (42, None), (None, None)],
)  # fmt: skip
def test_a_renders_urls_are_kept_only_as_plain_web_urls(given: object, kept: str | None) -> None:
    """A status's or a webhook's video and cover URL reach the ledger, the results file and
    the report only as absolute http(s) URLs without a space or a control character."""
    update = video_update("v1", {"status": "completed", "video_url": given, "cover_url": given}, 0)
    assert (update.video_url, update.cover_url) == (kept, kept)
