"""``qoima stats``: what the archive holds."""

from __future__ import annotations

import json
from typing import Any

import click

from qoima.cli.main import data_dir_option, settings_from


@click.command()
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stats(as_json: bool, **options: Any) -> None:
    """Counts of patients, studies, series, instances and bytes stored."""
    from qoima.app import build_archive

    totals = build_archive(settings_from(options)).stats()
    if as_json:
        click.echo(json.dumps(totals))
        return
    for name, value in totals.items():
        click.echo(f"{name}: {value}")


def register(group: click.Group) -> None:
    group.add_command(stats)
