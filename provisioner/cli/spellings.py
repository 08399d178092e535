"""Terraform's one-dash spellings of long options: `-detailed-exitcode`, `-auto-approve`, `-out=FILE`.

People who know Terraform type its spellings; every command accepts them as the two-dash option
of the same name. Only a word that names one of the command's own long options is read this way,
so a value that merely starts with a dash (after an option that takes one, or after `--`) is left
as it is, and short options (`-q`, `-h`) keep their meaning.
"""

from __future__ import annotations

import re

import click

ONE_DASH = re.compile(r"-([a-z][a-z0-9-]+)(=.*)?", re.DOTALL)


def two_dash_spellings(command: click.Command, args: list[str]) -> list[str]:
    """``args`` with each one-dash spelling of one of ``command``'s long options given its two dashes."""
    taking_values: set[str] = set()
    long_names: set[str] = set()
    for parameter in command.params:
        if isinstance(parameter, click.Option):
            names = [name for name in (*parameter.opts, *parameter.secondary_opts) if name.startswith("--")]
            long_names.update(names)
            if not parameter.is_flag and not parameter.count:
                taking_values.update(names)
    long_names.add("--help")  # Terraform's -help
    spelled: list[str] = []
    value_next = False
    for index, arg in enumerate(args):
        if arg == "--":
            return spelled + args[index:]
        if value_next:  # the value of the option before it, whatever it looks like
            spelled.append(arg)
            value_next = False
            continue
        match = ONE_DASH.fullmatch(arg)
        if match and f"--{match.group(1)}" in long_names:
            arg = "-" + arg
        name = arg.split("=", 1)[0]
        value_next = name in taking_values and "=" not in arg
        spelled.append(arg)
    return spelled


class TerraformSpellings(click.Group):
    """A group whose commands accept Terraform's one-dash spellings of their long options."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not isinstance(command, click.Group):
            rest = two_dash_spellings(command, rest)
        return name, command, rest
