"""The README and docs/cli.md cannot drift from the commands they document."""

import pathlib
import re

from headend.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CLI_DOC = (ROOT / "docs" / "cli.md").read_text()


def make_targets():
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.M)
    return phony.group(1).split()


def headend_commands(parser=None, prefix="headend"):
    parser = parser or build_parser()
    found = []
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                found.append(prefix + " " + name)
                found.extend(headend_commands(sub, prefix + " " + name))
    return found


def test_readme_opens_with_the_two_commands():
    first_block = README.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


def test_every_make_target_is_documented():
    targets = make_targets()
    assert {"demo", "test", "lint"} <= set(targets)
    missing = [t for t in targets if "make " + t not in README]
    assert not missing, "README does not mention: " + ", ".join(missing)


def test_every_headend_command_is_documented():
    missing = [c for c in headend_commands() if c not in CLI_DOC]
    assert not missing, "docs/cli.md does not mention: " + ", ".join(missing)


def test_readme_points_to_the_command_reference():
    assert "docs/cli.md" in README


def test_readme_layout_names_every_top_level_directory():
    for d in ("protocol/", "firmware/", "headend/", "hil_tests/", "tools/", "tests/"):
        assert d in README, d
