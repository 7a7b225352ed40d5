"""The ``qoima`` command: parse arguments, build the app, hand off."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from qoima.config import Settings, load_settings
from qoima.errors import QoimaError

logger = logging.getLogger(__name__)


def data_dir_option(function: Any) -> Any:
    function = click.option("--config", "config_file", type=click.Path(path_type=Path),
                            help="TOML settings file (also QOIMA_CONFIG).")(function)
    function = click.option("--database-url", default=None,
                            help="SQLAlchemy URL of the index (default: SQLite in the data dir).")(
        function)
    return click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="Folder for the index and blobs (default ./qoima-data).")(function)


def settings_from(options: dict[str, Any]) -> Settings:
    config_file = options.pop("config_file", None)
    return load_settings(config_file, **options)


def setup_logging(level: str) -> None:
    from qoima.config import LOG_FORMAT

    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=LOG_FORMAT)


@click.group()
@click.version_option(package_name="qoima")
def cli() -> None:
    """Qoima: medical imaging archive (PACS) with built-in AI triage."""


def register_commands() -> None:
    """Attach every command module to the ``qoima`` group (idempotent)."""
    from qoima.cli import ae, ai, audit, export, importer, serve, stats, users  # issue 6

    for module in (serve, importer, ae, stats, ai, users, audit, export):
        module.register(cli)


def main() -> None:
    register_commands()
    try:
        cli(standalone_mode=True)
    except QoimaError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
