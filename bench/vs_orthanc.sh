#!/usr/bin/env bash
# Qoima versus Orthanc, same machine, same corpus, one alternating run of the shared pacsbench
# harness (../shared/bench). Both start empty. Prints the tables and the Qoima/Orthanc ratios.
#
#   bash bench/vs_orthanc.sh --quick                 # ~2 min smoke run
#   bash bench/vs_orthanc.sh --phases echo,ingest,index,retrieve --idx-sizes 10000,50000,100000
#
# Qoima runs with one serving process per core (``--workers``, as docs/configuration.md advises
# for a dedicated server); QOIMA_BENCH_WORKERS=1 measures a single process. Extra arguments go to
# pacsbench's run.py. Needs Debian's orthanc, orthanc-dicomweb and dcmtk.
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS="$(cd ../shared/bench && pwd)"
WORK="${PACSBENCH_WORK:-/tmp/pacsbench}"
QDIR="$WORK/qoima"
DICOM_PORT=11212
HTTP_PORT=8280
PY=.venv/bin/python
WORKERS="${QOIMA_BENCH_WORKERS:-$(nproc)}"
$PY -c "import requests" 2>/dev/null || .venv/bin/pip install -q requests

rm -rf "$QDIR" && mkdir -p "$QDIR"
$PY -m qoima ae add --data-dir "$QDIR/data" BENCHSCP 127.0.0.1 11113 >/dev/null
QOIMA_AI_ENABLED=false $PY -m qoima serve --data-dir "$QDIR/data" --dicom-port $DICOM_PORT \
  --http-port $HTTP_PORT --ae-title QOIMA --workers "$WORKERS" >"$QDIR/server.log" 2>&1 &
QPID=$!
bash "$HARNESS/orthanc.sh" start >/dev/null
trap 'kill $QPID 2>/dev/null || true; bash "$HARNESS/orthanc.sh" stop >/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.2; done

cat >"$QDIR/targets.json" <<JSON
[{"name": "orthanc", "host": "127.0.0.1", "port": 4242, "aet": "ORTHANC",
  "url": "http://127.0.0.1:8042/dicom-web", "storage_dirs": ["$WORK/orthanc/storage"], "pid": "auto"},
 {"name": "qoima", "host": "127.0.0.1", "port": $DICOM_PORT, "aet": "QOIMA",
  "url": "http://127.0.0.1:$HTTP_PORT/dicomweb", "storage_dirs": ["$QDIR/data"], "pid": "$QPID"}]
JSON
mkdir -p bench/results
OUT="bench/results/qoima-vs-orthanc-$(date +%Y%m%d-%H%M).json"
status=0
$PY "$HARNESS/run.py" --targets-file "$QDIR/targets.json" --out "$OUT" "$@" || status=$?
{ echo "Qoima: \`qoima serve --workers $WORKERS\` ($(git rev-parse --short HEAD))."; echo
  $PY "$HARNESS/summarize.py" "$OUT"; } | tee "${OUT%.json}.md"
exit $status
