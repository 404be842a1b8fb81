"""`jogg-batch sandbox`: placeholder replaced by the sandbox helper."""

from __future__ import annotations

import click


@click.command()
def sandbox() -> None:
    """Serve the local JoggAI v2 sandbox."""
    raise click.UsageError("not built yet")
