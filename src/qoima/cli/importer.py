"""``qoima import PATH...``: files, folders and zip archives through the C-STORE ingest path."""

from __future__ import annotations

import logging
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from qoima.cli.main import data_dir_option, settings_from, setup_logging
from qoima.errors import QoimaError

logger = logging.getLogger(__name__)


def _sources(paths: tuple[Path, ...]) -> Iterator[tuple[str, Any]]:
    """(name, reader) pairs; the reader returns the bytes when called."""
    for path in paths:
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                yield from _sources((child,))
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive_file:
                for info in archive_file.infolist():
                    if not info.is_dir():
                        yield f"{path}:{info.filename}", (
                            lambda name=info.filename, zf=path: zipfile.ZipFile(zf).read(name))
        elif path.is_file():
            yield str(path), path.read_bytes
        else:
            yield str(path), None


@click.command("import")
@data_dir_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def import_command(paths: tuple[Path, ...], **options: Any) -> None:
    """Import DICOM files, folders and zip archives (same checks as C-STORE)."""
    from qoima.app import build_archive, configure_libraries

    settings = settings_from(options)
    setup_logging("WARNING")
    configure_libraries()
    archive = build_archive(settings)
    sources = list(_sources(paths))
    counts: Counter[str] = Counter()
    rejected: list[tuple[str, str]] = []
    for name, reader in tqdm(sources, unit="file", desc="import", disable=None):
        if reader is None:
            counts["rejected"] += 1
            rejected.append((name, "no such file"))
            continue
        try:
            result = archive.store_instance(reader(), origin="import")
        except QoimaError as exc:
            counts["rejected"] += 1
            rejected.append((name, str(exc)))
            continue
        counts["duplicates" if result.is_duplicate else "stored"] += 1
    click.echo(f"stored: {counts['stored']}, duplicates: {counts['duplicates']}, "
               f"rejected: {counts['rejected']}")
    for name, reason in rejected:
        click.echo(f"  rejected {name}: {reason}")
    archive.database.dispose()


def register(group: click.Group) -> None:
    group.add_command(import_command)
