"""The API key as a value that cannot be shown by accident.

`Secret` is not a `str`: `str()`, `repr()`, `%s`, f-strings and `json.dumps(..., default=str)`
all give `***`, and plain `json.dumps` refuses it. The text comes out only through `reveal()`,
which the client calls where it sets the `x-api-key` header (and the look-up cache where it
derives its directory name). It lives in a module of its own because both `config` and
`client` need it and `config` already imports `client`.

`Secret.scrub` takes the key out of text a server sent back, in every spelling a server or proxy
was seen to echo: any case (`SK-TEST`), percent-encoded (`sk%2Dtest`), in base64 (alone or inside
an encoded `user:key`), in hex, as HTML character references (`&#115;&#107;`), and cut short.
Any run of at least 12 characters of the key (`piece_length`; a shorter key only whole) is masked
whole.
Shorter runs are left: the answers scrubbed carry video ids and URLs that must stay intact. With
8, a key of hex digits would share a run with about one random hex video id in seven million
(25 x 25 windows at 16^-8 each), and mask it; with 12, one in six hundred billion. Masking half
of the sandbox's `sk-sandbox` broke every media URL (`/_sandbox/media/...`).

`Secret.scrub_config` is for text built from configuration that may hold a piece of the key of
any length: the base URL (a key pasted into JOGG_BASE_URL, or a URL built from part of it) and the
errors httpx raises while parsing it (`Invalid port: 'sk-li'`). It masks every run of
`CONFIG_PIECE` (3) characters of the key: such text holds no server data to keep intact, and a
run of 1 or 2 characters says next to nothing of a key (its `sk` prefix is public), while masking
them would blank most of any message.
"""

from __future__ import annotations

import base64
import hmac
import html
import re
from typing import Final
from urllib.parse import unquote

from batch.errors import ConfigError

MASK: Final = "***"
CONFIG_PIECE: Final = 3  # the shortest run of the key `Secret.scrub_config` masks


def masked_url(url: str) -> str:
    """`url` with what may carry a credential as `***`: its user name and password, its query
    and its fragment (`https://***@host/v2?***`), for a message that names it. The credentials
    run to the URL's last `@`, with or without a scheme (`bob:pw@proxy:3128`, as a proxy
    variable is often set): a password may hold `/`, `?` or `#` (libpq, proxies and S3 secret
    keys take them), where a URL parser ends the user's part and would show the rest."""
    scheme = _URL_SCHEME.match(url)
    start = scheme.end() if scheme else 0
    at = url.rfind("@", start)
    if at >= 0:
        url = f"{url[:start]}***{url[at:]}"
    return _URL_QUERY.sub(r"\1***", url)


_URL_SCHEME: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_URL_QUERY: Final = re.compile(r"([?#]).*$", re.DOTALL)


def piece_length(key_length: int) -> int:
    """The shortest run of a key's characters that `Secret.scrub` masks (module docstring)."""
    return min(key_length, 12)


def _spellings(char: str) -> str:
    """A pattern for one character of the key: either case, percent-encoded, or an HTML
    character reference (`&#115;`, `&#x73;`, as a gateway's error page escapes what it echoes)."""
    cases = sorted({re.escape(char.lower()), re.escape(char.upper())})
    encoded = "%" + "".join(f"[{d.lower()}{d.upper()}]" for d in f"{ord(char):02x}")
    hex_digits = "".join(f"[{d.lower()}{d.upper()}]" for d in f"{ord(char):x}")
    entity = f"&#0*{ord(char)};|&#[xX]0*{hex_digits};"
    return f"(?:{'|'.join(cases)}|{encoded}|{entity})"


def _base64_runs(raw: bytes) -> set[str]:
    """The base64 characters that depend on the key's bytes alone, when 0, 1 or 2 bytes come
    before it in what was encoded (both alphabets); runs under 8 characters are left out."""
    runs = set()
    for before in range(3):
        end = (before + len(raw)) // 3 * 4  # the groups of three bytes wholly the key's
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            run = encode(b"\0" * before + raw).decode()[4 if before else 0 : end]
            if len(run) >= 8:
                runs.add(run)
    return runs


class _Scrubber:
    """Finds every run of `piece_length` characters of the key, then extends it as far as the
    text goes on spelling the key."""

    def __init__(self, key: str, size: int) -> None:
        self._key = key.lower()
        self._chars = [re.compile(_spellings(char)) for char in key]
        pieces = {"".join(map(_spellings, key[i : i + size])) for i in range(len(key) - size + 1)}
        # The look-ahead lets the search skip, in one step, a place no piece can start at.
        starts = re.escape("".join(sorted({*key.lower(), *key.upper(), "%", "&"})))
        self._pieces = re.compile(f"(?=[{starts}])(?:{'|'.join(sorted(pieces))})") if key else None
        # The key in base64 (a server echoing a Basic header, or a token it built from it) or
        # in hex: whole, and inside longer text at each of base64's three alignments (`user:key`).
        raw = key.encode()
        encoded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
        encoded |= {raw.hex(), raw.hex().upper(), *_base64_runs(raw)}
        self._encoded = sorted(
            {form.rstrip("=") for form in encoded if form}, key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        if self._pieces is None:
            return text
        for form in self._encoded:
            text = text.replace(form, MASK)
        parts, position = [], 0
        while found := self._pieces.search(text, position):
            parts += [text[position : found.start()], MASK]
            position = self._extended(text, found.group(), found.end())
        parts.append(text[position:])
        return "".join(parts)

    def _extended(self, text: str, piece: str, end: int) -> int:
        plain, longest = html.unescape(unquote(piece)).lower(), end
        start = self._key.find(plain)
        while start >= 0:
            index, reach = start + len(plain), end
            while index < len(self._chars) and (more := self._chars[index].match(text, reach)):
                index, reach = index + 1, more.end()
            longest = max(longest, reach)
            start = self._key.find(plain, start + 1)
        return longest


class Secret:
    """A key that prints as `***`; `reveal()` is the only way to its text."""

    __slots__ = ("_scrubbers", "_value")
    _value: str
    _scrubbers: dict[int, _Scrubber]

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_scrubbers", {})

    def reveal(self) -> str:
        """The key itself: for the request header only."""
        return self._value

    def scrub(self, text: str) -> str:
        """`text` with every spelling of the key, or of a long enough piece of it, masked."""
        return self._scrubbed(text, piece_length(len(self._value)))

    def scrub_config(self, text: str) -> str:
        """`text` built from configuration, with every spelling of the key, or of any run of
        `CONFIG_PIECE` of its characters, masked (module docstring)."""
        return self._scrubbed(text, min(len(self._value), CONFIG_PIECE))

    def _scrubbed(self, text: str, size: int) -> str:
        if size not in self._scrubbers:
            self._scrubbers[size] = _Scrubber(self._value, size)
        return self._scrubbers[size](text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Secret cannot be changed")

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: object) -> Secret:
        return self


def checked_key(text: str, source: str) -> Secret:
    """`text` as a Secret if it is one line of printable ASCII without spaces.

    Anything else (a newline from a second line, a control or non-ASCII character) would end
    up in an HTTP header, where it breaks the request and the error echoes the key. The
    message names where the key came from and the position, never the key.
    """
    for position, char in enumerate(text, start=1):
        if not "!" <= char <= "~":
            kind = "a space" if char == " " else "a control or non-ASCII character"
            raise ConfigError(
                f"{source}: the API key holds {kind} at position {position}; "
                "a key is one line of printable ASCII without spaces"
            )
    return Secret(text)
