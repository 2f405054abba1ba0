#!/usr/bin/env bash
# The crash test: `sluice serve` killed with SIGKILL again and again under a mixed load
# (runs, principal creation, catalogue reads, small ingests), restarted each time. After
# every restart, with no manual repair:
#   - no run is left `running`: every charged `run.start` in the log has its `run.release`;
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
api() { curl -sS --fail-with-body -X "$2" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' "$URL$3" ${4:+-d "$4"}; }

# --- set-up, as in the walkthrough, with a small dataset and a large budget.
$SLUICE examples write "$work/examples" >/dev/null
head -2001 "$work/examples/vehicles.csv" > "$work/small.csv"
ADMIN=$($SLUICE init --data-dir "$work/data" | sed -n 's/^admin token: //p')
SECOND_ADMIN=$($SLUICE admin add --data-dir "$work/data" --name "duty officer" | sed -n 's/^token: //p')
start_server
organisation() { api "$ADMIN" POST /v1/organisations "{\"name\":\"$1\"}" | jq .id; }
principal() {
  local created; created=$(api "$ADMIN" POST /v1/principals "$1")
  if [ "$(jq -r .state <<<"$created")" = pending_approval ]; then
    created=$(api "$SECOND_ADMIN" POST "/v1/principals/$(jq .id <<<"$created")/approve" '{}')
  fi
  jq -r .token <<<"$created"
}
POLICE=$(organisation "Police")
OPERATORS=$(organisation "Operator Co.")
BUREAU_ORG=$(organisation "Data Bureau")
CAC=$(organisation "Cyberspace Administration")
PROVIDER=$(principal "{\"name\":\"provider\",\"role\":\"provider\",\"organisation_id\":$POLICE}")
OPERATOR=$(principal "{\"name\":\"operator\",\"role\":\"operator\",\"organisation_id\":$OPERATORS,\"licence\":{\"number\":\"L-1\",\"valid_from\":\"2026-01-01T00:00:00Z\",\"valid_until\":\"2030-01-01T00:00:00Z\"}}")
BUREAU=$(principal "{\"name\":\"bureau\",\"role\":\"reviewer\",\"reviewer_kind\":\"data_bureau\",\"organisation_id\":$BUREAU_ORG}")
DEPARTMENT=$(principal "{\"name\":\"department\",\"role\":\"reviewer\",\"reviewer_kind\":\"providing_department\",\"organisation_id\":$POLICE}")
REGULATOR=$(principal "{\"name\":\"inspector\",\"role\":\"regulator\",\"organisation_id\":$CAC}")
DATASET=$(api "$PROVIDER" POST /v1/datasets "$(jq -n --rawfile schema "$work/examples/vehicles.schema.toml" '{schema: $schema, epsilon_total: 1000}')" | jq .id)
ingest() { curl -sS --fail-with-body -X PUT -H "Authorization: Bearer $PROVIDER" -H 'Content-Type: text/csv' --data-binary @"$work/small.csv" "$URL/v1/datasets/$DATASET/data"; }
ingest >/dev/null
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
later=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
APPLICATION=$(api "$OPERATOR" POST /v1/applications "{\"dataset_id\":$DATASET,\"purpose\":\"crash test\",\"use_scope\":\"aggregates\",\"security_measures\":\"sandbox\",\"columns\":[\"vehicle_age_years\",\"violations_12m\",\"accidents_5y\",\"insured_value_cny\"],\"valid_from\":\"$now\",\"valid_until\":\"$later\",\"epsilon\":1000}" | jq .id)
api "$BUREAU" POST "/v1/applications/$APPLICATION/reviews" '{"approve":true}' >/dev/null
AUTHORISATION=$(api "$DEPARTMENT" POST "/v1/applications/$APPLICATION/reviews" '{"approve":true}' | jq .authorisation_id)
MODEL=$(api "$OPERATOR" POST /v1/models "$(jq -n --arg wasm "$(base64 -w0 "$work/examples/vehicle-risk.wasm")" \
  --rawfile manifest "$work/examples/vehicle-risk.manifest.toml" --argjson authorisation "$AUTHORISATION" \
  '{authorisation_id: $authorisation, module_base64: $wasm, manifest: $manifest}')" | jq .id)
api "$BUREAU" POST "/v1/models/$MODEL/reviews" '{"approve":true,"checklist":{"usability":true,"consistency":true,"compliance":true,"security":true}}' >/dev/null
KEY=$(curl -sS "$URL/v1/audit/public-key" | jq -r .public_key)
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

# Every charged run.start has its run.release, and the ledger is the sum of the charges.
check_log() {
  api "$REGULATOR" GET /v1/audit/export > "$work/export.jsonl"
  local started ended
  started=$(jq -s '[.[] | select(.action == "run.start" and .outcome == "ok")] | length' "$work/export.jsonl")
  ended=$(jq -s '[.[] | select(.action == "run.release")] | length' "$work/export.jsonl")
  [ "$started" = "$ended" ] || fail "$started charged runs started, $ended ended: a run was left running"
  local charged spent
  charged=$(jq -s "[.[] | select(.action == \"run.start\" and .outcome == \"ok\" and .details.authorisation == \"$AUTHORISATION\") | .details.epsilon_charged | tonumber] | add // 0" "$work/export.jsonl")
  spent=$(api "$OPERATOR" GET "/v1/authorisations/$AUTHORISATION/budget" | jq .epsilon_spent)
  jq -ne "($charged - $spent) | fabs < 1e-9" >/dev/null || fail "the ledger says $spent spent, the log $charged"
  echo "$started runs started and ended; ledger $spent = log $charged"
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
