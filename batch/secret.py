"""The API key as a value that cannot be shown by accident.

`Secret` is not a `str`: `str()`, `repr()`, `%s`, f-strings and `json.dumps(..., default=str)`
all give `***`, and plain `json.dumps` refuses it. The text comes out only through `reveal()`,
which the client calls where it sets the `x-api-key` header (and the look-up cache where it
derives its directory name). It lives in a module of its own because both `config` and
`client` need it and `config` already imports `client`.
"""

from __future__ import annotations

import hmac
from typing import Final

from batch.errors import ConfigError

MASK: Final = "***"


class Secret:
    """A key that prints as `***`; `reveal()` is the only way to its text."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """The key itself: for the request header only."""
        return self._value

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
