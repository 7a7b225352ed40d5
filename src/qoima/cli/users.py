"""``qoima users ...``: local users, API tokens, reading pools, consent, DIMSE peers."""

from __future__ import annotations

import sys
from typing import Any

import click

from qoima.cli.main import data_dir_option, settings_from


def _archive(options: dict[str, Any]) -> Any:
    from qoima.app import build_archive

    return build_archive(settings_from(options))


def _audit_settings(archive: Any, detail: str) -> None:
    from qoima.archive import audit
    from qoima.archive.access import Principal

    audit.record(archive, Principal("cli", "admin", "cli"), "settings", "success", detail=detail)


@click.group()
def users() -> None:
    """Users, roles, API tokens, reading pools, consent and DIMSE peers (issue 6)."""


@users.command("add")
@data_dir_option
@click.argument("username")
@click.option("--role", required=True,
              type=click.Choice(["admin", "radiologist", "clinician", "technician", "analyst",
                                 "auditor", "researcher"]))
@click.option("--facility", default=None, help="The user's facility (InstitutionName).")
@click.option("--region", default=None, help="One of Kazakhstan's 17 regions or 3 cities.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--no-password", is_flag=True, help="Tokens or OIDC only, no local password.")
def add(username: str, role: str, facility: str | None, region: str | None,
        password_stdin: bool, no_password: bool, **options: Any) -> None:
    """Add a user (asks for a password unless --no-password or --password-stdin)."""
    from qoima.archive import access

    password: str | None = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif not no_password:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    if password is not None and len(password) < 12:
        raise click.BadParameter("a password has at least 12 characters")
    archive = _archive(options)
    access.add_user(archive, username, role, password, facility, region)
    _audit_settings(archive, f"user {username} added with role {role}")
    click.echo(f"added {username} ({role})")


@users.command("list")
@data_dir_option
def list_command(**options: Any) -> None:
    """Users with role, facility and region."""
    from qoima.archive import access

    for user in access.list_users(_archive(options)):
        click.echo(f"{user.username}\t{user.role}\t{user.institution_name or '-'}\t"
                   f"{user.region or '-'}\t{'active' if user.is_active else 'disabled'}")


@users.command("token")
@data_dir_option
@click.argument("username")
@click.option("--label", default="", help="What the token is for.")
@click.option("--ttl-days", type=float, default=None, help="Expiry (default: none).")
def token(username: str, label: str, ttl_days: float | None, **options: Any) -> None:
    """Issue a bearer API token (printed once; only its hash is kept)."""
    from qoima.archive import access

    archive = _archive(options)
    secret = access.issue_token(archive, username, label, ttl_days * 86400 if ttl_days else None)
    _audit_settings(archive, f"API token issued for {username}")
    click.echo(secret)


@users.command("pool")
@data_dir_option
@click.argument("pool")
@click.argument("members", nargs=-1, required=True)
def pool(pool: str, members: tuple[str, ...], **options: Any) -> None:
    """Add members to a reading pool: user:NAME, facility:INSTITUTION, region:REGION."""
    from qoima.archive import access

    archive = _archive(options)
    for member in members:
        access.add_pool_member(archive, pool, member)
    _audit_settings(archive, f"reading pool {pool}: added {len(members)} members")
    click.echo(f"pool {pool}: {len(members)} members added")


@users.command("consent")
@data_dir_option
@click.argument("patient_id")
@click.argument("facility")
@click.option("--reason", required=True, help="Where the consent is recorded.")
@click.option("--days", type=float, default=365.0)
def consent(patient_id: str, facility: str, reason: str, days: float, **options: Any) -> None:
    """Record a patient's consent that FACILITY may see all their studies."""
    from qoima.archive import access

    archive = _archive(options)
    access.record_consent(archive, patient_id, facility, reason, days * 86400)
    from qoima.archive import audit
    from qoima.archive.access import Principal

    audit.record(archive, Principal("cli", "admin", "cli"), "settings", "success",
                 patient_ids=[patient_id], detail=f"consent for facility {facility}")
    click.echo("consent recorded")


@users.command("peer")
@data_dir_option
@click.argument("ae_title")
@click.argument("addresses", nargs=-1, required=True)
@click.option("--facility", default=None, help="The peer's facility (InstitutionName).")
@click.option("--role", default="technician",
              type=click.Choice(["admin", "radiologist", "clinician", "technician"]))
def peer(ae_title: str, addresses: tuple[str, ...], facility: str | None, role: str,
         **options: Any) -> None:
    """Allow a DIMSE peer: its AE title from these addresses (IPs or CIDR networks)."""
    from qoima.archive import access

    archive = _archive(options)
    try:
        access.add_peer(archive, ae_title, list(addresses), role, facility)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    _audit_settings(archive, f"DIMSE peer {ae_title} allowed from {' '.join(addresses)}")
    click.echo(f"peer {ae_title} allowed")


def register(group: click.Group) -> None:
    group.add_command(users)
