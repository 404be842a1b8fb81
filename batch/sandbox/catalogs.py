"""The sandbox's fixed catalogs: avatars, voices, music, visual styles and seeded products.

They are the same for every seed, so sample catalogs written against them stay valid. The seeded
product ids are also listed in `sample_data/sandbox_products.csv` (a test keeps the two equal).
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from typing import Final

from batch.vocabulary import ASPECT_RATIOS

MEDIA_HOST: Final = "https://res.jogg.ai/sandbox"

_FIRST_NAMES: Final = (
    "Amanda", "Brian", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jamal",
    "Keiko", "Liam", "Maya", "Noah", "Olivia", "Priya", "Quentin", "Rosa", "Samuel", "Tara",
)  # fmt: skip
_SCENES: Final = (
    "lifestyle", "outdoors", "business", "studio", "health_fitness", "education", "news",
)  # fmt: skip
_ETHNICITIES: Final = (
    "european", "african", "south_asian", "east_asian", "middle_eastern", "south_american",
    "north_american",
)  # fmt: skip
_AGES: Final = ("adult", "senior", "young_adult")


@dataclass(frozen=True, slots=True)
class Avatar:
    id: int
    name: str
    aspect_ratio: int  # 0 portrait, 1 landscape, 2 square, as the v2 responses give it
    style: str
    gender: str
    age: str
    scene: str
    ethnicity: str

    def public_item(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "video_url": f"{MEDIA_HOST}/avatars/{self.id}.mp4",
            "cover_url": f"{MEDIA_HOST}/avatars/{self.id}.jpg",
            "aspect_ratio": self.aspect_ratio,
            "style": self.style,
            "gender": self.gender,
            "age": self.age,
        }

    def custom_item(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "video_url": f"{MEDIA_HOST}/custom_avatars/{self.id}.mp4",
            "cover_url": f"{MEDIA_HOST}/custom_avatars/{self.id}.jpg",
            "api_only": False,
            "avatar_status": "completed",
            "fail_msg": "",
            "avatar_url": f"{MEDIA_HOST}/custom_avatars/{self.id}/avatar.mp4",
        }


def _public_avatars() -> tuple[Avatar, ...]:
    ids = [*range(1, 41), 81, 127, *range(300, 310)]
    avatars = []
    for n, avatar_id in enumerate(ids):
        first = _FIRST_NAMES[n % len(_FIRST_NAMES)]
        scene = _SCENES[n % len(_SCENES)]
        avatars.append(
            Avatar(
                id=avatar_id,
                name=f"{first} {scene.replace('_', ' ')}",
                aspect_ratio=n % 3,
                style=("professional", "social")[n % 2],
                gender=("female", "male")[n % 2 if n % 4 < 2 else 1 - n % 2],
                age=_AGES[n % 3],
                scene=scene,
                ethnicity=_ETHNICITIES[n % len(_ETHNICITIES)],
            )
        )
    return tuple(avatars)


PUBLIC_AVATARS: Final = _public_avatars()
CUSTOM_AVATARS: Final = tuple(
    Avatar(avatar_id, name, 1, "professional", gender, "adult", "studio", "european")
    for avatar_id, name, gender in (
        (9001, "My studio twin", "female"),
        (9002, "Founder intro", "male"),
        (9003, "Support desk", "female"),
        (9004, "Warehouse walk-through", "male"),
    )
)
PUBLIC_AVATAR_IDS: Final = frozenset(avatar.id for avatar in PUBLIC_AVATARS)
CUSTOM_AVATAR_IDS: Final = frozenset(avatar.id for avatar in CUSTOM_AVATARS)


@dataclass(frozen=True, slots=True)
class Voice:
    voice_id: str
    name: str
    language: str
    gender: str
    age: str
    accent: str
    use_case: str

    def item(self) -> dict[str, object]:
        return {
            "name": self.name,
            "voice_id": self.voice_id,
            "audio_url": f"{MEDIA_HOST}/voices/{self.voice_id}.mp3",
            "language": self.language,
            "gender": self.gender,
            "age": self.age,
            "accent": self.accent,
            "use_case": self.use_case,
        }


VOICES: Final = tuple(
    Voice(*fields)
    for fields in (
        (
            "en-US-ChristopherNeural",
            "Christopher",
            "english",
            "male",
            "middle_aged",
            "american",
            "narrative_story",
        ),
        ("en-US-JennyNeural", "Jenny", "english", "female", "young", "american", "advertisement"),
        ("en-US-GuyNeural", "Guy", "english", "male", "young", "american", "advertisement"),
        ("en-US-AriaNeural", "Aria", "english", "female", "middle_aged", "american", "news"),
        (
            "en-GB-RyanNeural",
            "Ryan",
            "english",
            "male",
            "middle_aged",
            "british",
            "narrative_story",
        ),
        ("en-GB-SoniaNeural", "Sonia", "english", "female", "young", "british", "advertisement"),
        (
            "en-AU-NatashaNeural",
            "Natasha",
            "english",
            "female",
            "young",
            "australian",
            "social_media",
        ),
        ("en-IN-PrabhatNeural", "Prabhat", "english", "male", "middle_aged", "indian", "education"),
        (
            "fr-FR-DeniseNeural",
            "Denise",
            "french",
            "female",
            "middle_aged",
            "parisian",
            "advertisement",
        ),
        ("fr-FR-HenriNeural", "Henri", "french", "male", "old", "parisian", "narrative_story"),
        ("de-DE-ConradNeural", "Conrad", "german", "male", "middle_aged", "standard", "news"),
        ("de-DE-KatjaNeural", "Katja", "german", "female", "young", "standard", "advertisement"),
        (
            "es-ES-ElviraNeural",
            "Elvira",
            "spanish",
            "female",
            "middle_aged",
            "castilian",
            "advertisement",
        ),
        ("es-MX-JorgeNeural", "Jorge", "spanish", "male", "young", "mexican", "social_media"),
        ("it-IT-ElsaNeural", "Elsa", "italian", "female", "young", "standard", "advertisement"),
        (
            "pt-BR-FranciscaNeural",
            "Francisca",
            "portuguese",
            "female",
            "middle_aged",
            "brazilian",
            "advertisement",
        ),
        ("ja-JP-NanamiNeural", "Nanami", "japanese", "female", "young", "standard", "social_media"),
        ("ko-KR-SunHiNeural", "SunHi", "korean", "female", "young", "standard", "advertisement"),
        (
            "zh-CN-XiaoxiaoNeural",
            "Xiaoxiao",
            "chinese",
            "female",
            "young",
            "mandarin",
            "narrative_story",
        ),
        (
            "nl-NL-ColetteNeural",
            "Colette",
            "dutch",
            "female",
            "middle_aged",
            "standard",
            "education",
        ),
        (
            "GzE4TcXfh9rYCU9gVgPp",
            "Serena",
            "english",
            "female",
            "middle_aged",
            "american",
            "narrative_story",
        ),
        (
            "pNInz6obpgDQGcFmaJgB",
            "Adam",
            "english",
            "male",
            "middle_aged",
            "american",
            "narrative_story",
        ),
        ("TxGEqnHWrfWFTfGW9XjX", "Josh", "english", "male", "young", "american", "social_media"),
        (
            "EXAVITQu4vr4xnjDxMaL",
            "Bella",
            "english",
            "female",
            "young",
            "american",
            "advertisement",
        ),
    )
)
VOICE_IDS: Final = frozenset(voice.voice_id for voice in VOICES)

_MOODS: Final = ("Upbeat", "Calm", "Bright", "Cinematic", "Lo-fi", "Acoustic", "Electro", "Warm")
MUSIC: Final = tuple(
    {
        "id": music_id,
        "name": f"{_MOODS[music_id % len(_MOODS)]} Background {music_id}",
        "music_url": f"{MEDIA_HOST}/music/{music_id}.mp3",
        "duration": 60 + (music_id * 7) % 120,
    }
    for music_id in range(1, 41)
)
MUSIC_IDS: Final = frozenset(range(1, 41))

_SHARED_STYLES: Final = (
    "Simple Product Switch", "Dynamic Showcase", "Elegant Presentation", "Bold Headline",
    "Minimal White", "Feature Callouts", "Price Tag Pop", "Lifestyle Montage", "Before and After",
)  # fmt: skip
_ONLY_FOR: Final = {
    "portrait": ("Vertical Story Stack", "Swipe Up Reveal", "Phone Frame Feed"),
    "landscape": ("Simple split screen template", "Widescreen Spotlight", "Side by Side Compare"),
    "square": ("Square Grid Collage", "Centered Spotlight", "Feed Tile"),
}


def _visual_styles() -> dict[str, tuple[dict[str, object], ...]]:
    styles: dict[str, tuple[dict[str, object], ...]] = {}
    for ratio_index, ratio in enumerate(ASPECT_RATIOS):
        names = _SHARED_STYLES + _ONLY_FOR[ratio]
        styles[ratio] = tuple(
            {"id": 2400 + 100 * ratio_index + n, "name": name} for n, name in enumerate(names)
        )
    return styles


VISUAL_STYLES: Final = _visual_styles()
VISUAL_STYLE_NAMES: Final = {
    ratio: frozenset(str(style["name"]) for style in styles)
    for ratio, styles in VISUAL_STYLES.items()
}


def encode_product_id(number: int) -> str:
    """Product ids are unpadded base64 of a decimal integer: `54419368` -> `NTQ0MTkzNjg`."""
    return base64.b64encode(str(number).encode()).decode().rstrip("=")


_ADJECTIVES: Final = (
    "Classic", "Eco", "Compact", "Deluxe", "Smart", "Travel", "Organic", "Wireless", "Vintage",
    "Ultra", "Cozy", "Pro",
)  # fmt: skip
_NOUNS: Final = (
    "Water Bottle", "Desk Lamp", "Yoga Mat", "Coffee Grinder", "Backpack", "Face Serum",
    "Running Shoes", "Bluetooth Speaker", "Throw Blanket", "Chef Knife", "Plant Pot",
    "Phone Stand", "Sunglasses", "Tea Set", "Wall Clock", "Dog Leash", "Notebook",
)  # fmt: skip


def _seeded_products() -> tuple[tuple[str, str], ...]:
    rng = random.Random("jogg-sandbox-products")  # fixed, whatever the seed
    numbers: list[int] = []
    while len(numbers) < 200:
        number = rng.randrange(10_000_000, 2_000_000_000)
        if number not in numbers:
            numbers.append(number)
    return tuple(
        (
            encode_product_id(number),
            f"{_ADJECTIVES[n % len(_ADJECTIVES)]} {_NOUNS[(n * 7) % len(_NOUNS)]} {n + 1}",
        )
        for n, number in enumerate(numbers)
    )


SEEDED_PRODUCTS: Final = _seeded_products()
"""(product_id, name) pairs, in the order of sample_data/sandbox_products.csv."""
