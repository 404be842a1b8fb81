"""jogg-batch: product catalogs into JoggAI videos, rate-limited, resumable, never paid twice."""

__version__ = "0.1.0"
