"""The JoggAI v2 vocabulary shared by the client side and the sandbox: enums and business codes.

Source: ../shared/reference/joggai-api.md sections 3.3, 4 and 6.1 (the vendor's OpenAPI spec).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

LENGTHS: Final = ("15", "30", "60")
ASPECT_RATIOS: Final = ("portrait", "landscape", "square")
DEFAULT_ASPECT_RATIO: Final = "landscape"
AVATAR_TYPES: Final = (0, 1)  # 0 public, 1 custom
SCRIPT_STYLES: Final = (
    "Don't Worry",
    "Storytime",
    "Discovery",
    "Data",
    "Top 3 reasons",
    "Light marketing",
)
LANGUAGES: Final = (
    "english", "filipino", "french", "german", "hindi", "indonesian", "italian", "japanese",
    "korean", "malay", "portuguese", "russian", "spanish", "thai", "vietnamese", "arabic", "greek",
    "turkish", "slovenian", "croatian", "romanian", "chinese", "bengali", "urdu", "hungarian",
    "traditional-chinese", "polish", "cantonese", "danish", "malayalam", "tamil", "telugu", "czech",
    "hebrew", "zulu", "swedish", "lithuanian", "dutch", "flemish", "norwegian", "finnish",
    "bulgarian", "latvian", "ukrainian", "mongolian", "persian", "odia", "assamese", "kannada",
    "tagalog", "amharic", "serbian", "slovak", "swahili",
)  # fmt: skip

# `GET /v2/product_videos?status=` filter values.
LIST_STATUS_FILTER: Final = {3: "processing", 4: "completed", 5: "failed"}


class Code(IntEnum):
    """Business codes in the response envelope's `code` field."""

    OK = 0
    NOT_FOUND = 10104
    INVALID_KEY = 10105
    NO_CREDIT = 18020
    NO_PERMISSION = 18025
    RATE_LIMITED = 429
    PARAMETER = 40000
    SYSTEM = 50000


# Codes after which no request on this key can succeed: the run stops at once.
ACCOUNT_CODES: Final = frozenset({Code.INVALID_KEY, Code.NO_CREDIT, Code.NO_PERMISSION})
# Codes where the API said no to this request: retrying is waste.
PERMANENT_CODES: Final = frozenset({Code.PARAMETER, Code.NOT_FOUND})
# Codes that prove the request was not processed and may be sent again after a pause. 50000 is
# not one: a server may commit and then fail, so it is reconciled first (see batch.joggai.client).
RETRYABLE_CODES: Final = frozenset({Code.RATE_LIMITED})
