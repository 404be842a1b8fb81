"""The README's command table and exit codes, generated from the code (by cog: `make cog`, and
`make lint` fails when the README differs from what this module makes)."""

from __future__ import annotations

from collections.abc import Iterable

import click

from batch.errors import EXIT_CODE_MEANINGS


def command_table(group: click.Group, names: Iterable[str]) -> str:
    """One Markdown row per command, in the order given: its usage and the first sentence of
    its help."""
    lines = ["| command | what it does |", "| --- | --- |"]
    context = click.Context(group, info_name=group.name)
    for name in names:
        command = group.get_command(context, name)
        assert command is not None, name
        arguments = [
            param.make_metavar(context)
            for param in command.params
            if isinstance(param, click.Argument)
        ]
        required = [
            f"{param.opts[-1]} {param.make_metavar(context)}"
            for param in command.params
            if isinstance(param, click.Option) and param.required
        ]
        usage = " ".join([name, *arguments, *required]).replace("|", "\\|")
        lines.append(f"| `{usage}` | {_first_sentence(command.help or '')} |")
    return "\n".join(lines) + "\n"


def exit_code_table() -> str:
    lines = ["| code | meaning |", "| --- | --- |"]
    lines += [f"| {int(code)} | {meaning} |" for code, meaning in EXIT_CODE_MEANINGS.items()]
    return "\n".join(lines) + "\n"


def _first_sentence(text: str) -> str:
    paragraph = " ".join(text.split("\n\n", 1)[0].split())
    return paragraph.split(". ", 1)[0].strip().rstrip(".").replace("|", "\\|")
