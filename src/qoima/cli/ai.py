"""``qoima ai``: list installed models, evaluate one on local labelled images, run workers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from qoima.cli.main import data_dir_option, settings_from, setup_logging
from qoima.config import Settings


def _models_dirs(settings: Settings) -> tuple[Path, ...]:
    from qoima.app import ai_service_options

    return ai_service_options(settings).models_dirs


@click.group("ai")
def ai() -> None:
    """AI triage: installed models, local evaluation, queue workers."""


@ai.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_models(as_json: bool, **options: Any) -> None:
    """The installed models, and what each applies to."""
    from qoima.ai.registry import Registry

    registry = Registry.discover(_models_dirs(settings_from(options)))
    rows: list[dict[str, Any]] = [{
        "name": model.name,
        "version": model.version,
        "pipeline": model.pipeline,
        "directory": str(model.directory),
        "applies_to": model.description.applies_to,
        "outputs": model.description.output_names,
        "thresholds": model.description.thresholds,
    } for model in registry.models]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no models installed")
    for row in rows:
        applies = row["applies_to"]
        click.echo(f"{row['name']} {row['version']}  pipeline {row['pipeline']}  "
                   f"modalities {','.join(applies.get('modalities', []))}  "
                   f"outputs {','.join(row['outputs'])}")


@ai.command("evaluate")
@click.argument("model_name")
@click.option("--labels", "labels_file", type=click.Path(exists=True, dir_okay=False,
                                                         path_type=Path), required=True,
              help="CSV with columns file,label (paths relative to the CSV).")
@click.option("--sensitivity", type=click.FloatRange(0.01, 1.0), default=0.9,
              show_default=True, help="Target sensitivity for the site-specific threshold.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@data_dir_option
def evaluate(model_name: str, labels_file: Path, sensitivity: float, as_json: bool,
             **options: Any) -> None:
    """Check MODEL on local labelled images: AUC, sensitivity/specificity, site threshold."""
    from qoima.ai.evaluation import evaluate as run_evaluation
    from qoima.ai.models.onnx_classifier import OnnxClassifier
    from qoima.ai.registry import Registry

    settings = settings_from(options)
    model = Registry.discover(_models_dirs(settings)).by_name(model_name)
    try:
        report = run_evaluation(OnnxClassifier(model.directory, settings.ai_threads),
                                labels_file, sensitivity)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    _print_report(report)


def _interval(value: dict[str, float]) -> str:
    return f"{value['estimate']:.3f} (95% CI {value['low']:.3f}-{value['high']:.3f})"


def _print_report(report: dict[str, Any]) -> None:
    click.echo(f"model {report['model']} {report['model_version']}: {report['n_images']} images "
               f"({report['n_positive']} abnormal, {report['n_negative']} normal), "
               f"{len(report['skipped'])} skipped")
    click.echo(f"AUC {_interval(report['auc'])}")
    for title, key in (("shipped operating point", "shipped_operating_point"),
                       ("site threshold", "site_operating_point")):
        point = report.get(key)
        if point:
            click.echo(f"{title}: threshold {point['threshold']:.4f}, sensitivity "
                       f"{_interval(point['sensitivity'])}, specificity "
                       f"{_interval(point['specificity'])}")
    for finding, figures in report["findings"].items():
        click.echo(f"  {finding}: AUC {_interval(figures['auc'])}")
    for skipped in report["skipped"]:
        click.echo(f"skipped {skipped['file']}: {skipped['reason']}")


@ai.command("jobs")
@data_dir_option
@click.option("--study", "study_instance_uid", default=None, help="Only this study's jobs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def jobs(study_instance_uid: str | None, as_json: bool, **options: Any) -> None:
    """AI jobs, newest first, with status and reason."""
    from qoima.app import build_archive
    from qoima.archive.jobs import Jobs

    rows = Jobs(build_archive(settings_from(options))).list(study_instance_uid)
    if as_json:
        click.echo(json.dumps([{
            "id": row.id, "study_instance_uid": row.study_instance_uid,
            "pipeline": row.pipeline, "model_version": row.model_version,
            "status": row.status, "attempts": row.attempts, "error": row.error,
            "result": json.loads(row.result) if row.result else None,
            "created_at": row.created_at, "updated_at": row.updated_at,
        } for row in rows], indent=2))
        return
    for row in rows:
        click.echo(f"{row.id} {row.status:8} {row.pipeline} {row.model_version} "
                   f"{row.study_instance_uid} attempts={row.attempts} {row.error or ''}")


@ai.command("worker")
@data_dir_option
@click.option("--queue-url", "ai_queue_url", default=None,
              help="redis://host:6379/0 (also QOIMA_AI_QUEUE_URL).")
@click.option("--workers", "ai_workers", type=int, default=None, help="Worker threads.")
@click.option("--threads", "ai_threads", type=int, default=None,
              help="onnxruntime threads per model.")
def worker(**options: Any) -> None:
    """Run AI job workers in the foreground, against the shared index, blobs and queue."""
    from qoima.ai.worker import build_queue
    from qoima.app import ai_service_options, build_archive, configure_libraries

    settings = settings_from(options)
    setup_logging(settings.log_level)
    configure_libraries()
    service_options = ai_service_options(settings)
    queue, registry = build_queue(build_archive(settings), service_options)
    click.echo(f"AI worker: {len(registry.models)} model(s), queue "
               f"{settings.ai_queue_url or 'embedded SQLite'}", err=True)
    queue.run_consumer(max(1, settings.ai_workers))


def register(group: click.Group) -> None:
    group.add_command(ai)
