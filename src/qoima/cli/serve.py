"""``qoima serve``: DIMSE and HTTP in one process on the embedded default."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from qoima.cli.main import data_dir_option, settings_from, setup_logging


@click.command()
@data_dir_option
@click.option("--ae-title", default=None, help="Our AE title (default QOIMA).")
@click.option("--dicom-port", type=int, default=None, help="DIMSE port (default 11112).")
@click.option("--http-port", type=int, default=None, help="HTTP port (default 8080).")
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--workers", type=int, default=None,
              help="Processes serving DIMSE and HTTP on the same ports (default 1).")
@click.option("--duplicate-policy", type=click.Choice(["reject", "overwrite"]), default=None,
              help="Same SOP Instance UID with different content: reject (default) or overwrite.")
@click.option("--demo", is_flag=True, default=False,
              help="Load a few demo studies (synthetic patients, CC BY images) at startup.")
def serve(**options: Any) -> None:
    """Run the archive: DICOM network, DICOMweb and web UI in one process."""
    from qoima.app import run_server, with_huge_page_malloc

    with_huge_page_malloc()

    is_demo = options.pop("demo")
    settings = settings_from(options)
    if is_demo:
        settings = dataclasses.replace(settings, extra={**settings.extra, "demo": True})
    setup_logging(settings.log_level)
    run_server(settings)


def register(group: click.Group) -> None:
    group.add_command(serve)

