"""``qoima ae add|list|remove``: known remote AEs (C-MOVE destinations), live while serving."""

from __future__ import annotations

from typing import Any

import click

from qoima.cli.main import data_dir_option, settings_from


@click.group()
def ae() -> None:
    """Known remote application entities (C-MOVE destinations)."""


def _archive(options: dict[str, Any]) -> Any:
    from qoima.app import build_archive

    return build_archive(settings_from(options))


@ae.command("add")
@data_dir_option
@click.argument("title")
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
def add(title: str, host: str, port: int, **options: Any) -> None:
    """Add or update a remote AE."""
    from qoima.archive import RemoteAE

    if not 0 < len(title) <= 16 or "\\" in title:
        raise click.BadParameter("an AE title has 1 to 16 characters and no backslash")
    _archive(options).add_remote_ae(RemoteAE(title, host, port))
    click.echo(f"added {title} {host}:{port}")


@ae.command("list")
@data_dir_option
def list_command(**options: Any) -> None:
    """List remote AEs."""
    for remote in _archive(options).remote_aes():
        click.echo(f"{remote.ae_title}\t{remote.host}\t{remote.port}")


@ae.command("remove")
@data_dir_option
@click.argument("title")
def remove(title: str, **options: Any) -> None:
    """Remove a remote AE."""
    _archive(options).remove_remote_ae(title)
    click.echo(f"removed {title}")


def register(group: click.Group) -> None:
    group.add_command(ae)
