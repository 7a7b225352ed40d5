"""``qoima export --deidentify --project NAME KEY=VALUE... --out DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from qoima.cli.main import data_dir_option, settings_from


@click.command("export")
@data_dir_option
@click.argument("query", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--deidentify", is_flag=True, required=True,
              help="Required: only de-identified export exists.")
@click.option("--project", required=True, help="Pseudonyms and UIDs are consistent per project.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option("--include-burned-in", is_flag=True,
              help="Also export images that may show identifying text in their pixels.")
def export(query: tuple[str, ...], deidentify: bool, project: str, out_dir: Path,
           include_burned_in: bool, **options: Any) -> None:
    """De-identify (PS3.15 Basic Profile, modified dates, clean descriptors) the studies
    matching KEY=VALUE keys (StudyInstanceUID=..., PatientID=..., Modality=CR) into DIR."""
    from qoima.app import build_archive
    from qoima.archive import access
    from qoima.archive import export as archive_export
    from qoima.archive.access import Principal

    filters = {}
    for item in query:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE")
        filters[key] = value
    archive = build_archive(settings_from(options))
    with access.acting_as(Principal("cli", "admin", "cli")):
        query_ = archive_export.study_query(filters)
        result = archive_export.export_to_folder(archive, project, query_, out_dir,
                                                 include_burned_in=include_burned_in)
    click.echo(f"exported {result.exported} instances to {out_dir}; "
               f"{result.skipped_burned_in} left out for burned-in annotation; "
               f"{result.failed} failed")


def register(group: click.Group) -> None:
    group.add_command(export)
