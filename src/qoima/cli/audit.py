"""``qoima audit verify|export|patient``: check and export the tamper-evident audit trail."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from qoima.cli.main import data_dir_option, settings_from


def _archive(options: dict[str, Any]) -> Any:
    from qoima.app import build_archive

    return build_archive(settings_from(options))


@click.group()
def audit() -> None:
    """The audit trail: verify the hash chain, export it, show who viewed a patient."""


@audit.command("verify")
@data_dir_option
def verify(**options: Any) -> None:
    """Check every record's hash and link; exit 1 at the first changed, inserted or deleted."""
    from qoima.archive import audit as archive_audit

    result = archive_audit.verify(_archive(options))
    if result.is_intact:
        click.echo(f"intact: {result.records} records, head {result.head_hash}")
        return
    click.echo(f"TAMPERED: {result.problem}", err=True)
    sys.exit(1)


@audit.command("export")
@data_dir_option
@click.option("--fhir", "as_fhir", is_flag=True, help="FHIR AuditEvent resources, NDJSON.")
@click.option("--syslog", "syslog_target", default=None, metavar="HOST[:PORT]",
              help="Send DICOM audit messages (PS3.15 A.5) as RFC 5424 syslog over UDP.")
@click.option("--after", type=int, default=0, help="Only records after this id.")
def export(as_fhir: bool, syslog_target: str | None, after: int, **options: Any) -> None:
    """Export records as FHIR AuditEvent (stdout) or DICOM audit messages over syslog."""
    from qoima.archive import audit as archive_audit

    if as_fhir == bool(syslog_target):
        raise click.UsageError("give exactly one of --fhir or --syslog HOST[:PORT]")
    events = archive_audit.events(_archive(options), after)
    if as_fhir:
        for event in events:
            click.echo(json.dumps(archive_audit.to_fhir(event), ensure_ascii=False))
        return
    host, _, port = (syslog_target or "").rpartition(":")
    if not host or not port.isdigit():
        host, port = syslog_target or "", "514"
    sent = archive_audit.send_syslog(events, host.strip("[]"), int(port))
    click.echo(f"sent {sent} records to {host}:{port}")


@audit.command("patient")
@data_dir_option
@click.argument("patient_id")
@click.option("--json", "as_json", is_flag=True)
def patient(patient_id: str, as_json: bool, **options: Any) -> None:
    """Who viewed this patient's images: when, who, role, what."""
    from qoima.archive import audit as archive_audit

    rows = archive_audit.who_viewed(_archive(options), patient_id)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for row in rows:
        click.echo(f"{row['when']}\t{row['who']}\t{row['role']}\t{row['action']}")


def register(group: click.Group) -> None:
    group.add_command(audit)
