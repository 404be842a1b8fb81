"""Request models, fingerprints and scalar normalisers of batch.payload."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable
from typing import Any, get_args

import pydantic
import pytest

from batch import vocabulary
from batch.payload import (
    TAG_PATTERN,
    AspectRatio,
    CreateVideoRequest,
    Length,
    ProductDetails,
    RequestDefaults,
    ResolvedFields,
    build_request,
    fields_made_alike,
    fingerprint,
    language_as_earlier_versions_read,
    normalize_aspect_ratio,
    normalize_avatar_type,
    normalize_caption,
    normalize_int_id,
    normalize_language,
    normalize_length,
    normalize_script_style,
    normalize_text,
    normalize_url,
)

BASE = ResolvedFields(
    product_id="NTQ0MTkzNjg",
    product=None,
    length="30",
    aspect_ratio="landscape",
    caption=False,
    name=None,
    avatar_id=127,
    avatar_type=0,
    voice_id="en-US-ChristopherNeural",
    music_id=None,
    script_style="Storytime",
    language="english",
    visual_style=None,
    override_script=None,
    webhook_url=None,
)


def test_literal_types_match_the_vocabulary() -> None:
    """The request models accept exactly the API's lengths and aspect ratios."""
    assert get_args(Length) == vocabulary.LENGTHS
    assert get_args(AspectRatio) == vocabulary.ASPECT_RATIOS


def _reason(normalize: Callable[[object], object], value: object) -> str:
    with pytest.raises(ValueError) as info:  # noqa: PT011 - callers compare the whole message
        normalize(value)
    return str(info.value)


# ---- fingerprint: fixed vectors, so any change to the job identity fails here ----


def test_fingerprint_fixed_vector_minimal_row() -> None:
    """The identity of a plain row never changes across versions."""
    assert fingerprint(BASE) == "ff3b72d37c5593e352845675c707333473f060a8095cae44526f4d5696614f58"


def test_fingerprint_fixed_vector_full_row() -> None:
    """A row with every field set (and separators inside values) has a fixed identity."""
    fields = BASE._replace(
        length="60",
        aspect_ratio="portrait",
        caption=True,
        name="Mug | blue \\ large",
        avatar_id=81,
        avatar_type=1,
        voice_id="fr-FR-DeniseNeural",
        music_id=0,
        script_style="Top 3 reasons",
        language="french",
        visual_style="Dynamic Showcase",
        override_script="Line one\nline two",
    )
    assert fingerprint(fields) == "ac2943df4b7b526ce891dcb7c13575bb9957de2e726fad81244961e2b4bf8446"


def test_fingerprint_fixed_vector_product_from_url() -> None:
    """A row whose product is created from a URL is identified by that URL."""
    fields = BASE._replace(
        product_id=None,
        product=ProductDetails("https://shop.example/mug", "Mug", "A mug", None, ()),
    )
    assert fingerprint(fields) == "cd95462c89811098cd3abdd6049ed0558f2754e0ca6613f6e87e1633294c955a"


def test_fingerprint_fixed_vector_product_from_details() -> None:
    """A row whose product is created from details is identified by those details."""
    fields = BASE._replace(
        product_id=None,
        product=ProductDetails(None, "Mug", "A mug", "cooks", ("https://img/1", "https://img/2")),
    )
    assert fingerprint(fields) == "6a357dc0693c23a41604e6a0dfd824208cc3bcf89d91850652e82b867d527421"


def test_fingerprint_ignores_webhook_url() -> None:
    """Changing where results are reported does not make a new job (and a new payment)."""
    assert fingerprint(BASE._replace(webhook_url="https://hooks.example/x")) == fingerprint(BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"product_id": "NTQ0MTkzNjk"},
        {"length": "15"},
        {"aspect_ratio": "square"},
        {"caption": None},
        {"caption": True},
        {"name": ""},
        {"avatar_id": 128},
        {"avatar_type": None},
        {"voice_id": None},
        {"music_id": 0},
        {"script_style": "Data"},
        {"language": "german"},
        {"visual_style": "Dynamic Showcase"},
        {"override_script": "Hi"},
    ],
)
def test_fingerprint_changes_with_every_rendered_field(change: dict[str, Any]) -> None:
    """Every field that changes the video changes the identity (None, "", False differ too)."""
    assert fingerprint(BASE._replace(**change)) != fingerprint(BASE)


def test_fingerprint_escaping_is_unambiguous() -> None:
    """Moving a separator between two fields never yields the same identity."""
    one = BASE._replace(name="a|", visual_style="b")
    two = BASE._replace(name="a", visual_style="|b")
    three = BASE._replace(name="a\\", visual_style="|b")
    assert len({fingerprint(one), fingerprint(two), fingerprint(three)}) == 3


def test_fingerprint_product_url_ignores_details() -> None:
    """With a URL, the product's identity is the URL alone (the API scrapes the page)."""
    a = BASE._replace(product_id=None, product=ProductDetails("https://s/x", "A", None, None, ()))
    b = BASE._replace(product_id=None, product=ProductDetails("https://s/x", "B", "d", None, ()))
    assert fingerprint(a) == fingerprint(b)


# ---- request building ----


def test_build_request_body_drops_none_and_keeps_required_objects() -> None:
    """The body carries the required objects (audio may be empty) and no null values."""
    assert build_request(BASE).to_body() == {
        "product_id": "NTQ0MTkzNjg",
        "video_spec": {"length": "30", "aspect_ratio": "landscape", "caption": False},
        "avatar": {"id": 127, "type": 0},
        "voice": {"id": "en-US-ChristopherNeural"},
        "audio": {},
        "script": {"style": "Storytime", "language": "english"},
    }


def test_build_request_full_body() -> None:
    """Every optional field reaches the body under the vendor's names."""
    fields = BASE._replace(
        name="Mug",
        music_id=13,
        visual_style="Simple Product Switch",
        override_script="Buy it",
        webhook_url="https://hooks.example/jogg",
    )
    body = build_request(fields).to_body()
    assert body["video_spec"]["name"] == "Mug"
    assert body["audio"] == {"music_id": 13}
    assert body["visual_style"] == "Simple Product Switch"
    assert body["override_script"] == "Buy it"
    assert body["webhook_url"] == "https://hooks.example/jogg"


def test_to_body_puts_the_tag_first_in_the_name() -> None:
    """The reconciliation tag leads the title (a listing that cuts titles keeps it), or is the
    title when there is none."""
    assert build_request(BASE._replace(name="Mug")).to_body("ab12")["video_spec"]["name"] == (
        "[jb-ab12] Mug"
    )
    assert build_request(BASE).to_body("ab12")["video_spec"]["name"] == "[jb-ab12]"


def test_tag_pattern_finds_the_tag_in_a_title() -> None:
    """Reconciliation recovers the tag from a title the API lists."""
    title = build_request(BASE._replace(name="Mug")).to_body("0fa3")["video_spec"]["name"]
    match = TAG_PATTERN.search(title)
    assert match is not None
    assert match.group(1) == "0fa3"
    assert TAG_PATTERN.search("Mug [jb-XYZ]") is None


def test_build_request_product_id_argument_overrides() -> None:
    """A product created at run time supplies the id of a URL-only row."""
    fields = BASE._replace(
        product_id=None, product=ProductDetails("https://s/x", None, None, None, ())
    )
    assert build_request(fields, product_id="MTIz").product_id == "MTIz"
    with pytest.raises(ValueError, match="no product_id"):
        build_request(fields)


@pytest.mark.parametrize(
    "change",
    [
        {"length": "45"},
        {"aspect_ratio": "9:16"},
        {"avatar_type": 2},
        {"music_id": -1},
        {"script_style": "storytime"},
        {"language": "klingon"},
    ],
)
def test_build_request_rejects_values_outside_the_schema(change: dict[str, Any]) -> None:
    """A value the vendor schema forbids never becomes a request."""
    with pytest.raises(pydantic.ValidationError):
        build_request(BASE._replace(**change))


def test_request_model_rejects_unknown_fields_and_is_frozen() -> None:
    """The request model forbids fields the API does not know and cannot be mutated."""
    body = build_request(BASE).to_body()
    with pytest.raises(pydantic.ValidationError):
        CreateVideoRequest.model_validate({**body, "surprise": 1})
    request = CreateVideoRequest.model_validate(body)
    with pytest.raises(pydantic.ValidationError):
        request.product_id = "x"  # type: ignore[misc]


def test_request_defaults_are_the_documented_ones() -> None:
    """Built-in defaults: a 30 s landscape video with avatar 127 and a Storytime script."""
    defaults = RequestDefaults()
    assert (defaults.length, defaults.aspect_ratio, defaults.caption) == ("30", "landscape", False)
    assert (defaults.avatar_id, defaults.avatar_type) == (127, 0)
    assert defaults.voice_id == "en-US-ChristopherNeural"
    assert (defaults.script_style, defaults.language) == ("Storytime", "english")
    assert defaults.music_id is None
    assert defaults.video_name is None


# ---- scalar normalisers ----


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", "30"),
        (30, "30"),
        (30.0, "30"),
        ("30.0", "30"),
        ("30s", "30"),
        (" 15 S ", "15"),
        ("60 seconds", "60"),
        ("60sec", "60"),
        ("1 min", "60"),  # minutes, as people write a minute's video
        ("0.5 minutes", "30"),
        ("15,0", "15"),  # a decimal comma: a `;` file from Excel in Europe
        (60.00000000000001, "60"),  # =0.1*600: a formula's binary noise, 60 as Excel shows
        ("30.000000000000004", "30"),
        ("0:00:15", "15"),  # a duration as a spreadsheet or Airtable writes it
        ("PT30S", "30"),  # ISO 8601's
        ("PT1M", "60"),
        (dt.timedelta(seconds=30), "30"),  # Parquet's duration type
        (dt.time(0, 1), "60"),  # a workbook's time cell
    ],
)
def test_normalize_length_accepts_typed_forms(value: object, expected: str) -> None:
    """Lengths as people type them become the API's strings."""
    assert normalize_length(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("45", "'45' is not a video length; use 15, 30 or 60"),
        (30.5, "'30.5' is not a video length; use 15, 30 or 60"),
        ("thirty", "'thirty' is not a video length; use 15, 30 or 60"),
        (True, "'true' is not a video length; use 15, 30 or 60"),
        ("15m", "'15m' is not a video length; use 15, 30 or 60"),  # 15 minutes, or metres?
        ("15,5", "'15,5' is not a video length; use 15, 30 or 60"),
        ("0:30", "'0:30' is not a video length; use 15, 30 or 60"),  # Excel: half an hour
    ],
)
def test_normalize_length_rejects_with_reason(value: object, reason: str) -> None:
    """A length outside 15/30/60 is rejected with a reason a person can act on."""
    assert _reason(normalize_length, value) == reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9:16", "portrait"),
        ("16:9", "landscape"),
        ("1:1", "square"),
        ("Portrait", "portrait"),
        (" LANDSCAPE ", "landscape"),
        ("Square", "square"),
        ("16 : 9", "landscape"),
        ("16:09", "landscape"),  # a spreadsheet took the ratio for a time
        ("16:09:00", "landscape"),
        ("09:16:00", "portrait"),
        ("1:01", "square"),
        ("01:01:00", "square"),
        ("Vertical", "portrait"),
        ("horizontal", "landscape"),
        ("9x16", "portrait"),
        ("16 \u00d7 9", "landscape"),
        ("1/1", "square"),
        ("09:16:00 AM", "portrait"),  # the time in 12 hours, as a US spreadsheet shows it
        ("4:09 PM", "landscape"),
        ("01:01:00 AM", "square"),
        ("4:09 p.m.", "landscape"),
        ("portrait (9:16)", "portrait"),  # as the tool's own messages write them
        ("Landscape (16:9)", "landscape"),
    ],
)
def test_normalize_aspect_ratio(value: str, expected: str) -> None:
    """Ratios and words in any case map to the API's words, and so do the times a spreadsheet
    makes of ratios typed in its cells."""
    assert normalize_aspect_ratio(value) == expected


def test_normalize_aspect_ratio_rejects() -> None:
    """Other ratios are rejected with the accepted forms."""
    assert _reason(normalize_aspect_ratio, "4:3") == (
        "'4:3' is not an aspect ratio; use portrait (9:16), landscape (16:9) or square (1:1)"
    )
    assert _reason(normalize_aspect_ratio, "16:10:00").startswith("'16:10:00' is not an aspect")
    assert _reason(normalize_aspect_ratio, "portrait (16:9)").startswith("'portrait (16:9)' is")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("yes", True),
        ("No", False),
        ("TRUE", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("y", True),
        ("N", False),
        ("on", True),
        ("Off", False),
        (True, True),
        (0, False),
        (1.0, True),
        ("1.0", True),  # a float column of switches, exported
        ("0.0", False),
        ("\u2713", True),  # check marks and crosses, as a checklist has them
        ("\u2705", True),
        ("\u2718", False),
        ("\u2610", False),
        ("ja", True),  # as German, French, Spanish and Portuguese shops write them
        ("Nein", False),
        ("oui", True),
        ("non", False),
        ("Sí", True),
        ("não", False),
        ("checked", True),  # Airtable's ticked checkbox
        ("WAAR", True),  # Excel's TRUE and FALSE in Dutch, Swedish, Polish, Russian, Turkish
        ("ONWAAR", False),
        ("FALSKT", False),
        ("PRAWDA", True),
        ("FAŁSZ", False),
        ("ИСТИНА", True),
        ("YANLIŞ", False),
    ],
)
def test_normalize_caption(value: object, expected: bool) -> None:
    """Every common spelling of a switch becomes a bool."""
    assert normalize_caption(value) is expected


def test_normalize_caption_rejects() -> None:
    """Anything else is rejected."""
    with pytest.raises(ValueError, match=r"^'maybe' is not a caption switch; use yes or no$"):
        normalize_caption("maybe")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127", 127), (127, 127), (127.0, 127), ("127.0", 127), (" 81 ", 81), (0, 0),
     # a formula's binary noise, as a workbook stores =0.28*100; Excel shows and exports 28
     ("28.000000000000004", 28), ("57.99999999999999", 58), (28.000000000000004, 28)],
)  # fmt: skip
def test_normalize_int_id(value: object, expected: int) -> None:
    """Whole numbers, however typed, become ints, as Excel shows them."""
    assert normalize_int_id(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("127.5", "'127.5' is not a whole-number id; write the id's digits, e.g. 127"),
        (
            "0.30000000000000004",
            "'0.30000000000000004' is not a whole-number id; write the id's digits, e.g. 127",
        ),
        ("abc", "'abc' is not a whole-number id; write the id's digits, e.g. 127"),
        (True, "'true' is not a whole-number id; write the id's digits, e.g. 127"),
        ("nan", "'nan' is not a whole-number id; write the id's digits, e.g. 127"),
        (-3, "'-3' is not a valid id; ids are 0 or more"),
    ],
)
def test_normalize_int_id_rejects(value: object, reason: str) -> None:
    """Fractions, words and negative numbers are not ids."""
    assert _reason(normalize_int_id, value) == reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12345678901234567", 12345678901234567),
        ("9223372036854775807", 2**63 - 1),
        (12345678901234567, 12345678901234567),
        ("+5", 5),
        ("1200.00", 1200),
        ("１２７", 127),
    ],
)
def test_ids_are_read_from_their_digits_never_through_a_float(value: object, expected: int) -> None:
    """A 17-digit id arrives with every digit; whole numbers keep Excel's `.0` form."""
    assert normalize_int_id(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1e3", "'1e3' is not a whole-number id; write the id's digits, e.g. 127"),
        ("1_000", "'1_000' is not a whole-number id; write the id's digits, e.g. 127"),
        ("12.50", "'12.50' is not a whole-number id; write the id's digits, e.g. 127"),
        (
            "99999999999999999999999",
            "'99999999999999999999999' is too large for an id; ids go up to 9223372036854775807",
        ),
        (
            2.0**60,
            "'1152921504606846976' is too large for a float column to hold an id exactly; "
            "store the ids as integers or text",
        ),
    ],
)
def test_exponents_and_ids_past_64_bits_are_refused(value: object, reason: str) -> None:
    """`1e3` is not typed as an id; an id too large for the API, or for a float, is refused."""
    assert _reason(normalize_int_id, value) == reason


@pytest.mark.parametrize("value", ["2.000", "12.000", " 127.000 ", "-1.000"])
def test_an_id_with_three_zeros_after_a_dot_is_ambiguous(value: str) -> None:
    """`2.000` is 2 with three decimals, or 2000 as a `;`-delimited European export writes it:
    refused, never sent as avatar 2 (while `1.270` was refused as no whole number)."""
    whole = value.strip().removesuffix(".000")
    assert _reason(normalize_int_id, value) == (
        f"{value!r} is ambiguous: {whole} with three decimals, or {whole}000 with a dot between "
        "its thousands; write the id's digits alone"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0", 127), ("60.00", 60), ("2.0000", 2), ("1234.000", 1234), ("127,0", 127)],
)
def test_a_dot_and_zeros_that_cannot_group_thousands_are_a_whole_id(
    value: str, expected: int
) -> None:
    """One, two or four zeros, or four digits before the dot, are no thousands group: the
    whole number a spreadsheet's number cell exports."""
    assert normalize_int_id(value) == expected


FROM_A_FLOAT = (
    "was written from a float (a spreadsheet's number cell, a float column), which cannot hold "
    "an id this large exactly; format the ids as text (or store them as integers)"
)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("9007199254740992.0", f"'9007199254740992.0' {FROM_A_FLOAT}"),  # 2**53 + 1 in a cell
        (" 9999999999999998.00 ", f"' 9999999999999998.00 ' {FROM_A_FLOAT}"),
        (
            2.0**53,
            "'9007199254740992' is too large for a float column to hold an id exactly; "
            "store the ids as integers or text",
        ),
    ],
)
def test_an_id_a_float_held_from_2_53_on_is_refused(value: object, reason: str) -> None:
    """From 2**53 on a float stores 2**53 + 1 as 2**53: a float there, or a whole number written
    from one (`.0`, as a workbook's number cell or pandas' CSV has it), is no id to send."""
    assert _reason(normalize_int_id, value) == reason


def test_a_floats_text_of_16_digits_is_no_id() -> None:
    """`9007199254740991.0`: a float's text of 16 digits, as a spreadsheet may have cut it."""
    assert "was written from a float" in _reason(normalize_int_id, "9007199254740991.0")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("999999999999999.0", 10**15 - 1), ("9007199254740993", 2**53 + 1),
     (2.0**53 - 1, 2**53 - 1)],
)  # fmt: skip
def test_an_id_below_2_53_or_typed_as_digits_is_kept(value: object, expected: int) -> None:
    """Below 2**53 a float holds every whole number; digits with no `.0` never were a float; a
    float's text keeps 15 digits (a spreadsheet's number cell keeps no more)."""
    assert normalize_int_id(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("0", 0), (1, 1), ("1.0", 1), ("Public", 0), ("custom", 1)]
)
def test_normalize_avatar_type(value: object, expected: int) -> None:
    """0/1 or the words public/custom."""
    assert normalize_avatar_type(value) == expected


def test_normalize_avatar_type_rejects() -> None:
    """Other types are rejected."""
    with pytest.raises(ValueError, match=r"^'2' is not an avatar type; use 0 \(public\) or 1"):
        normalize_avatar_type("2")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("dont worry", "Don't Worry"),
        ("DON'T WORRY", "Don't Worry"),
        ("storytime", "Storytime"),
        ("Story time", "Storytime"),
        ("top 3 reasons", "Top 3 reasons"),
        ("Top-3 Reasons", "Top 3 reasons"),
        ("light_marketing", "Light marketing"),
        ("data", "Data"),
        ("Discovery", "Discovery"),
    ],
)
def test_normalize_script_style(value: str, expected: str) -> None:
    """Styles match ignoring case, spaces and punctuation."""
    assert normalize_script_style(value) == expected


def test_normalize_script_style_rejects() -> None:
    """An unknown style lists the valid ones."""
    assert _reason(normalize_script_style, "Funny") == (
        "'Funny' is not a script style; use one of Don't Worry, Storytime, Discovery, Data, "
        "Top 3 reasons, Light marketing"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("English", "english"),
        (" french ", "french"),
        ("Traditional Chinese", "traditional-chinese"),
        ("en", "english"),  # ISO 639 codes, with a region or not
        ("en-US", "english"),
        ("pt_BR", "portuguese"),
        ("zh-TW", "traditional-chinese"),
        ("zh-Hans", "chinese"),
        ("nl-BE", "flemish"),
        ("nb", "norwegian"),
        ("Deutsch", "german"),  # a language by its own name, as a shop in it writes it
        ("español", "spanish"),
        ("Français", "french"),
        (unicodedata.normalize("NFD", "Español"), "spanish"),  # as a Mac writes it
        (unicodedata.normalize("NFD", "Français"), "french"),
        ("日本語", "japanese"),
        ("Bahasa Indonesia", "indonesian"),
        ("English (US)", "english"),  # a form's list: a region in brackets
        ("Português (Brasil)", "portuguese"),
        ("Chinese (Simplified)", "chinese"),
        ("Chinese (Traditional)", "traditional-chinese"),  # the note decides here
        ("Dutch (Belgium)", "flemish"),
    ],
)
def test_normalize_language(value: str, expected: str) -> None:
    """Languages are lowercased and checked against the API's list."""
    assert normalize_language(value) == expected


def test_normalize_language_rejects() -> None:
    """A language outside the list is rejected."""
    assert _reason(normalize_language, "Klingon") == (
        "'Klingon' is not a supported language; "
        "write its name, in any case, such as english or French (or its code: en, fr-CA)"
    )
    # Cantonese or traditional Chinese? And `no` reads as "no language" as much as Norwegian.
    for unclear in ("zh-HK", "no", "xx", "Klingon (Earth)"):
        assert _reason(normalize_language, unclear).startswith(f"{unclear!r} is not a supported")
    assert _reason(normalize_language, "Chinese (Hong Kong)") == (
        "'Chinese (Hong Kong)' does not say which of the API's languages it is "
        "(cantonese, chinese, traditional-chinese); write that one"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("zh_TW.UTF-8", "traditional-chinese"),  # a POSIX locale: its encoding is no language
        ("nl_BE.UTF-8", "flemish"),
        ("de_DE@euro", "german"),
        ("zh-Hant-MY", "traditional-chinese"),  # the script decides
        ("zh-Hans-CN", "chinese"),
        ("sr-Latn-RS", "serbian"),
        ("es-419", "spanish"),
        ("zh-yue", "cantonese"),  # IANA's tag of Cantonese before `yue`
        ("zh-yue-HK", "cantonese"),
        ("zh-CHT", "traditional-chinese"),  # .NET's old names
        ("zh-CHS", "chinese"),
        ("de-CH-1996", "german"),  # a spelling: a variant of the language, not another one
        ("es-ES_tradnl", "spanish"),
        ("en-GB-oxendict", "english"),
        ("en-US-u-ca-gregory", "english"),  # an extension, and private use
        ("en-US-x-twain", "english"),
    ],
)
def test_a_language_tag_is_read_by_all_its_parts(value: str, expected: str) -> None:
    """A tag was read by its first part alone: `zh-yue` (Cantonese), `zh_TW.UTF-8` and
    `zh-Hant-MY` (traditional) were sent as Mandarin, `nl_BE.UTF-8` as Dutch."""
    assert normalize_language(value) == expected


@pytest.mark.parametrize("value", ["zh-hak", "zh-min-nan", "zh_HK.UTF-8", "zh-HK-x-a"])
def test_a_language_tag_saying_more_than_a_region_or_script_is_refused(value: str) -> None:
    """Hakka, Hokkien, Hong Kong (Cantonese or traditional?): refused, where the first part
    made them Mandarin."""
    assert _reason(normalize_language, value).startswith(f"{value!r} is not a supported")
    assert language_as_earlier_versions_read(value) == "chinese"


@pytest.mark.parametrize("market", ["UK", "uk", " Uk "])
def test_a_language_written_as_uk_is_refused_as_unclear(market: str) -> None:
    """`UK` in a language column is the British market as often as ISO 639's Ukrainian: it
    was sent as Ukrainian, beside `US` and `GB`, which are refused. Refused too, saying which
    to write; `uk-UA` and `en-GB` say it."""
    assert "British English" in _reason(normalize_language, market)
    assert (normalize_language("uk-UA"), normalize_language("en-GB")) == ("ukrainian", "english")


@pytest.mark.parametrize("value", ["https://hooks.example/x", "http://127.0.0.1:8080/h?a=1"])
def test_normalize_url_accepts_http_urls(value: str) -> None:
    """http and https URLs with a host pass."""
    assert normalize_url(f" {value} ") == value


@pytest.mark.parametrize(
    "value",
    ["https://Shop.Example.COM/p/Mug", "HTTPS://shop.example.com:443/p/Mug?",
     "https://shop.example.com/p/Mug#", " https://shop.example.com/p/Mug "],
)  # fmt: skip
def test_normalize_url_writes_one_page_one_way(value: str) -> None:
    """The scheme and host in lower case, the scheme's own port and an empty query or fragment
    dropped: one page is one product and one request however it is written; the path keeps
    its case."""
    assert normalize_url(value) == "https://shop.example.com/p/Mug"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("http://Shop.example:80", "http://shop.example/"),
     ("http://shop.example:8080/a?b=1#c", "http://shop.example:8080/a?b=1#c"),
     ("https://shop.example/#/product/7", "https://shop.example/#/product/7"),
     ("http://[::1]:443/x", "http://[::1]:443/x")],
)  # fmt: skip
def test_normalize_url_keeps_what_tells_pages_apart(value: str, expected: str) -> None:
    """Another port, a query, a fragment (a page routed by it) stay as written."""
    assert normalize_url(value) == expected


@pytest.mark.parametrize(
    "value",
    ["https://Café.example/thé?q=é#é", "https://xn--caf-dma.example/th%C3%A9?q=%C3%A9#%C3%A9",
     "https://XN--CAF-DMA.example/th%c3%a9?q=%c3%a9#%c3%a9", "https://café.example/the\u0301?q=é#é",
     "https://ｃａｆé.example/th%C3%A9?q=%C3%A9#%C3%A9"],
)  # fmt: skip
def test_normalize_url_writes_a_page_as_a_uri(value: str) -> None:
    """An address as people read it (an IRI: a host and text outside ASCII, composed or not) and
    as a browser sends it (IDNA host, UTF-8 escapes in either case) are one spelling."""
    assert normalize_url(value) == "https://xn--caf-dma.example/th%C3%A9?q=%C3%A9#%C3%A9"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("https://shop.example/%7Ejo/%41%2d%5F%2e", "https://shop.example/~jo/A-_."),
     ("https://shop.example/a%2fb%3F?x=%26%3d", "https://shop.example/a%2Fb%3F?x=%26%3D"),
     ("https://shop.example/100%/a%zz", "https://shop.example/100%/a%zz"),
     ("https://straße.de/", "https://xn--strae-oqa.de/"),
     ("https://i❤.example/x", "https://i❤.example/x")],
)  # fmt: skip
def test_normalize_url_decodes_only_escapes_that_change_nothing(value: str, expected: str) -> None:
    """An escaped letter, digit or `-._~` is the character (RFC 3986, 6.2.2); an escaped `/`,
    `?`, `&` or `=` means otherwise than the character, and stays escaped; a `%` that escapes
    nothing is kept. A host is IDNA 2008 as browsers map it (`ß` stays, not `ss`), and kept as
    written where IDNA refuses it."""
    assert normalize_url(value) == expected


@pytest.mark.parametrize(
    "value",
    ["ftp://x/y", "hooks.example/x", "https://", "http://a b/", "http://[::1/", "not a url",
     "https://shop.example:99999/p"],
)  # fmt: skip
def test_normalize_url_rejects(value: str) -> None:
    """Anything but an absolute http(s) URL is rejected with the value in the reason."""
    assert _reason(normalize_url, value) == f"{value!r} is not an http(s) URL"


def test_normalize_text_strips_and_prints_whole_floats_as_ints() -> None:
    """Free text loses surrounding spaces; a float id read from Parquet prints as typed."""
    assert normalize_text("  Dynamic Showcase ") == "Dynamic Showcase"
    assert normalize_text(12.0) == "12"
    assert normalize_text(12) == "12"


def test_fields_made_alike_compose_the_free_text_and_end_its_lines_with_lf() -> None:
    """What an earlier version recorded from NFD text, CRLF or CR line ends and spaces at its
    ends, made alike as the catalog now sends it: NFC and LF, trimmed, in the name, script and
    product details; a product page as a URI; ids as they are."""
    nfd, nfc = "Cafe\u0301", "Caf\u00e9"
    details = ProductDetails("https://x/e\u0301", nfd, f"{nfd}\r\nb\rc ", nfd, ())
    raw = BASE._replace(name=f" {nfd}\r\n", override_script=f"a\r{nfd}", product=details)
    alike = fields_made_alike(raw)
    assert alike == BASE._replace(
        name=nfc,
        override_script=f"a\n{nfc}",
        product=ProductDetails("https://x/%C3%A9", nfc, f"{nfc}\nb\nc", nfc, ()),
    )
    assert fingerprint(alike) != fingerprint(raw)
    assert fields_made_alike(alike) == alike
