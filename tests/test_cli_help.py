"""--help: every command has an example, every option says what it does, file options say FILE/DIR."""
import click
import pytest

from helpers import run_cli
from precdoctor.interface.cli import main


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_examples_and_every_option_a_description(name):
    cmd = main.commands[name]
    code, out, err = run_cli(name, "--help")
    assert code == 0 and "Examples:" in out and f"precdoctor {name}" in out
    assert len(cmd.get_short_help_str(limit=200)) <= 60  # the command list fits 80 columns
    for p in cmd.params:
        if isinstance(p, click.Option) and not p.hidden:
            assert p.help, f"{name} {p.opts} has no help"
            if isinstance(p.type, click.Path):
                assert p.metavar in ("FILE", "DIR", "PATH"), f"{name} {p.opts} metavar {p.metavar}"
