"""Every command, argument and option of the CLI says what it is in --help."""

import argparse

from fedsim.cli import build_parser


def walk(parser, path):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, [*path, name])
        elif action.dest != "help":
            yield " ".join(path), action


def test_every_option_has_help():
    missing = [
        f"{where} {a.option_strings or a.dest}"
        for where, a in walk(build_parser(), ["fedsim"])
        if not a.help
    ]
    assert not missing, missing
