"""The installed version of jogg-batch (from the package metadata, so it is never edited twice)."""

from importlib import metadata

try:
    __version__ = metadata.version("jogg-batch")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
