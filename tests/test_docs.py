"""The docs tell the truth: every setting documented, the conformance statement matches the code."""

from __future__ import annotations

import re
from pathlib import Path

from qoima.config import documented_setting_names
from qoima.dimse.server import (
    QUERY_RETRIEVE_SOP_CLASSES,
    STORAGE_TRANSFER_SYNTAXES,
    storage_sop_classes,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    assert documented == set(documented_setting_names())


def _uids_in_section(text: str, heading: str) -> set[str]:
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"\| `([0-9.]+)` \|", section))


def test_conformance_statement_lists_what_the_code_accepts() -> None:
    text = (DOCS / "conformance.md").read_text()
    assert _uids_in_section(text, "### Transfer syntaxes accepted") == set(
        STORAGE_TRANSFER_SYNTAXES)
    assert _uids_in_section(text, "## 6. Storage SOP classes accepted") == set(
        storage_sop_classes())
    assert _uids_in_section(text, "### Query/Retrieve SOP classes") == {
        str(uid) for uid in QUERY_RETRIEVE_SOP_CLASSES}


def test_every_cli_command_is_documented() -> None:
    import click

    from qoima.cli.main import cli, register_commands

    readme = (DOCS.parent / "README.md").read_text() + (DOCS / "cli.md").read_text()
    def walk(group: click.Group, prefix: str) -> list[str]:
        names = []
        for name, command in group.commands.items():
            names.append(f"{prefix} {name}")
            if isinstance(command, click.Group):
                names += walk(command, f"{prefix} {name}")
        return names

    register_commands()
    for name in walk(cli, "qoima"):
        assert f"`{name}" in readme, f"{name} is not documented in docs/cli.md"
