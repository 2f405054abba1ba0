#!/usr/bin/env bash
# The crash test: `sluice serve` killed with SIGKILL again and again under a mixed load
# (runs, principal creation, catalogue reads, small ingests), restarted each time. After
# every restart, with no manual repair:
#   - no run is left `queued` or `running`: every charged `run.start` in the log has its
#     `run.release` (queued runs are claimed by the restarted node, cut-off ones settled);
#   - every result the operator was given reads back bit-identical (values, intervals);
#   - ingest, runs and reads work;
# and at the end the exported log verifies against the pinned key and extends a checkpoint
# kept before the first kill, and the ledger equals the charges in the log.
#
#   SLUICE=target/debug/sluice bash tests/crash.sh [CYCLES]      (.ci/run: 6 cycles)
set -euo pipefail
SLUICE=${SLUICE:-target/debug/sluice}
CYCLES=${1:-6}
PORT=${PORT:-18090}
URL="http://127.0.0.1:$PORT"
work=$(mktemp -d)
server=""
loads=()
cleanup() {
  for load in "${loads[@]}"; do kill "$load" 2>/dev/null || true; done
  [ -n "$server" ] && kill -9 "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "crash test: $*" >&2; echo "--- server log" >&2; tail -20 "$work/server.log" >&2; exit 1; }

# Runs are answered 50 ms after they start (plus the per-row part), and are not rate
# limited, so each cycle has several in flight when the kill comes.
export SLUICE_RUN_VISIBILITY_BASE_MS=50 SLUICE_MAX_RUNS_PER_HOUR=1000000
start_server() {
  $SLUICE serve --data-dir "$work/data" --listen "127.0.0.1:$PORT" >>"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 150); do curl -sf "$URL/healthz" >/dev/null && return 0; sleep 0.1; done
  fail "the server did not come back up"
}

# --- set-up, as in the walkthrough, with a small dataset and a large budget.
# shellcheck source=tests/scenario.sh
source "$(dirname "$0")/scenario.sh"
ADMIN=$($SLUICE init --data-dir "$work/data" | sed -n 's/^admin token: //p')
SECOND_ADMIN=$($SLUICE admin add --data-dir "$work/data" --name "duty officer" | sed -n 's/^token: //p')
start_server
make_scenario
api "$REGULATOR" GET "/v1/audit/checkpoint?fresh=true" | jq -r .checkpoint > "$work/kept-checkpoint.txt"
mkdir -p "$work/acknowledged"

# --- the load: each loop stops at the first refused connection (the kill).
run_loop() {
  local response
  while response=$(api "$OPERATOR" POST /v1/runs "{\"authorisation_id\":$AUTHORISATION,\"model_id\":$MODEL}" 2>/dev/null); do
    # Acknowledged: the operator holds this result now; it must read back the same.
    jq -S '{run_id, outputs}' <<<"$response" > "$work/acknowledged/$(jq .run_id <<<"$response").json"
  done
}
principal_loop() {
  local n=0
  while api "$ADMIN" POST /v1/principals "{\"name\":\"auditor $BASHPID-$n\",\"role\":\"regulator\",\"organisation_id\":$CAC}" >/dev/null 2>&1; do
    n=$((n + 1))
  done
}
read_loop() { while api "$OPERATOR" GET /v1/catalogue >/dev/null 2>&1; do :; done; }
ingest_loop() { while ingest >/dev/null 2>&1; do :; done; }

check_log() {
  export_when_runs_ended "$work/export.jsonl"
  check_runs_and_ledger "$work/export.jsonl"
}

for cycle in $(seq 1 "$CYCLES"); do
  loads=()
  run_loop & loads+=($!)
  run_loop & loads+=($!)
  principal_loop & loads+=($!)
  read_loop & loads+=($!)
  ingest_loop & loads+=($!)
  sleep "$(awk -v seed="$cycle" 'BEGIN { srand(seed); printf "%.2f", 0.6 + rand() * 1.4 }')"
  kill -9 "$server"
  wait "$server" 2>/dev/null || true
  for load in "${loads[@]}"; do wait "$load" 2>/dev/null || true; done
  start_server
  # No manual repair: every acknowledged result reads back the same, ingest and runs work.
  for file in "$work"/acknowledged/*.json; do
    [ -e "$file" ] || continue
    id=$(basename "$file" .json)
    api "$OPERATOR" GET "/v1/runs/$id" | jq -S '{run_id, outputs}' | cmp -s - "$file" \
      || fail "run $id reads back differently after restart $cycle"
  done
  ingest >/dev/null || fail "ingest fails after restart $cycle"
  api "$OPERATOR" POST /v1/runs "{\"authorisation_id\":$AUTHORISATION,\"model_id\":$MODEL}" >/dev/null \
    || fail "a run fails after restart $cycle"
  echo "cycle $cycle: $(ls "$work/acknowledged" | wc -l) acknowledged results read back"
  check_log
done

api "$REGULATOR" GET /v1/audit/export > "$work/export.jsonl"
$SLUICE audit verify "$work/export.jsonl" --public-key "$KEY" --trusted-checkpoint "$work/kept-checkpoint.txt" >/dev/null \
  || fail "the exported log does not verify or does not extend the kept checkpoint"
echo "crash test: $CYCLES kills; the log verifies and extends the checkpoint kept before the first"
