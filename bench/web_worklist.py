"""Worklist query latency at scale: N studies in the index, p50/p95 of the pages the UI asks for.

    .venv/bin/python bench/web_worklist.py --studies 100000 [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from qoima.index import worklist as index_worklist
from qoima.index.database import Database
from qoima.index.tables import facility_region, patient, report, study
from qoima.index.worklist import WorklistFilter

FACILITIES = [(f"Facility {n:03d}", f"Region {n % 17:02d}") for n in range(200)]


def populate(database: Database, studies: int) -> None:
    rng = random.Random(5)
    now = time.time()
    patients = max(1, studies * 2 // 3)

    def work(conn: object) -> None:
        conn.execute(insert(facility_region), [  # type: ignore[attr-defined]
            {"institution_name": name, "region": region} for name, region in FACILITIES])
        for start in range(0, patients, 10000):
            conn.execute(insert(patient), [  # type: ignore[attr-defined]
                {"id": n + 1, "patient_id": f"{n:012d}", "patient_name": f"P^{n}",
                 "patient_name_norm": f"p^{n}", "patient_key": f"{n:012d}|",
                 "patient_sex": "MF"[n % 2], "patient_birth_date": "19800101",
                 "created_at": now} for n in range(start, min(start + 10000, patients))])
        for start in range(0, studies, 10000):
            rows = []
            for n in range(start, min(start + 10000, studies)):
                facility = FACILITIES[rng.randrange(len(FACILITIES))][0]
                rows.append({
                    "id": n + 1, "patient_id_fk": rng.randrange(patients) + 1,
                    "study_instance_uid": f"1.2.3.{n}",
                    "study_date": f"2026{rng.randrange(1, 13):02d}15",
                    "institution_name": facility, "modalities_in_study": "\\CR\\",
                    "number_of_series": 1, "number_of_instances": 1, "size_bytes": 1,
                    "ai_priority": rng.random() if rng.random() < 0.9 else None,
                    "created_at": now - rng.random() * 86400 * 30, "updated_at": now})
            conn.execute(insert(study), rows)  # type: ignore[attr-defined]
        conn.execute(insert(report), [  # type: ignore[attr-defined]
            {"study_instance_uid": f"1.2.3.{n}", "status": "signed", "author": "r",
             "created_at": now, "updated_at": now} for n in range(0, studies, 3)])

    database.write(work)


def measure(database: Database, criteria: WorklistFilter, runs: int) -> tuple[float, float]:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        database.read(lambda conn: index_worklist.find_worklist(conn, criteria, time.time()))
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.sqlite'}"
    database = Database(url, sqlite_synchronous="NORMAL")
    database.upgrade()
    started = time.perf_counter()
    populate(database, args.studies)
    if not database.is_sqlite:
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")  # what autovacuum would do soon after a bulk load
    backend = url.split(":")[0]
    elapsed_s = time.perf_counter() - started
    print(f"{args.studies} studies loaded in {elapsed_s:.1f}s ({backend})")  # noqa: T201
    cases = {
        "unreported, first page": WorklistFilter(),
        "unreported, page 20": WorklistFilter(offset=950),
        "region filter": WorklistFilter(region="Region 03"),
        "facility filter": WorklistFilter(institution_name="Facility 042"),
        "AI flagged": WorklistFilter(ai="flagged"),
        "date range": WorklistFilter(date_from="20260301", date_to="20260331"),
        "patient by IIN": WorklistFilter(patient_id="000000012345", status="all"),
    }
    for name, criteria in cases.items():
        p50, p95 = measure(database, criteria, args.runs)
        print(f"{name:28s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")  # noqa: T201
    database.dispose()


if __name__ == "__main__":
    main()
