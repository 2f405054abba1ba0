#!/usr/bin/env bash
# The fault test of several nodes: three `sluice serve` nodes on loopback share one
# PostgreSQL database and one object store. RUNS runs (default 300) are sent to them in
# turn by four clients; mid-way one node is killed with SIGKILL and started again. Then,
# with no manual repair:
#   - every charged run ended exactly once (one `run.release` per charged `run.start`), and
#     none is left queued or running (a queued run is claimed by a live node's dispatcher, a
#     run cut off by the kill is settled by a live node);
#   - the ledger equals the sum of the charges in the log;
#   - every result a client was given has a receipt that verifies offline, and reads back
#     identical from every node;
#   - every node exports the same log, and it verifies against the pinned key and extends
#     a checkpoint kept before the kill.
#
#   SLUICE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
#   SLUICE_OBJECTS_URL='s3://sluice-test?endpoint=http://127.0.0.1:9768' \
#   SLUICE=target/debug/sluice bash tests/nodes.sh [RUNS]
#
# The database URL names a server and database: the test works in a schema of its own and
# drops it. The object store names a bucket: the test works under a prefix of its own
# (credentials from $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY). Without
# SLUICE_OBJECTS_URL the nodes share a directory, as nodes on one machine may.
set -euo pipefail
SLUICE=${SLUICE:-target/debug/sluice}
RUNS=${1:-300}
PORT=${PORT:-18095}
: "${SLUICE_DATABASE_URL:?set SLUICE_DATABASE_URL to a PostgreSQL server (the nodes share it)}"
work=$(mktemp -d)
servers=(x "" "" "")
loads=()
schema="sluice_nodes_$$"
server_url=$SLUICE_DATABASE_URL
cleanup() {
  for load in "${loads[@]}"; do kill "$load" 2>/dev/null || true; done
  for node in 1 2 3; do [ -n "${servers[$node]}" ] && kill -9 "${servers[$node]}" 2>/dev/null; done
  psql -q "$server_url" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "nodes test: $*" >&2
  for node in 1 2 3; do echo "--- node $node's log" >&2; tail -8 "$work/node$node.log" >&2; done
  exit 1
}

# --- one database schema and one object store prefix for this test, shared by the nodes.
psql -q "$server_url" -c "CREATE SCHEMA $schema" >/dev/null
separator='?'; [[ $server_url == *\?* ]] && separator='&'
export SLUICE_DATABASE_URL="$server_url${separator}options=-c%20search_path%3D$schema"
if [ -n "${SLUICE_OBJECTS_URL:-}" ]; then
  place=${SLUICE_OBJECTS_URL%%\?*}
  query=""; [[ $SLUICE_OBJECTS_URL == *\?* ]] && query="?${SLUICE_OBJECTS_URL#*\?}"
  export SLUICE_OBJECTS_URL="${place%/}/nodes-$$-$(date +%s)$query"
else
  export SLUICE_OBJECTS_URL="$work/shared-blobs"
fi
# Runs read 50,000 rows, so the kill finds some under way (charged, not yet released) on
# node 2, and are answered 100 ms after they start.
export SLUICE_RUN_VISIBILITY_BASE_MS=100 SLUICE_MAX_RUNS_PER_HOUR=1000000 SCENARIO_ROWS=50000

node_url() { echo "http://127.0.0.1:$((PORT + $1 - 1))"; }
start_node() {
  local node=$1
  $SLUICE serve --data-dir "$work/node$node" --listen "127.0.0.1:$((PORT + node - 1))" >>"$work/node$node.log" 2>&1 &
  servers[node]=$!
  for _ in $(seq 1 150); do curl -sf "$(node_url "$node")/readyz" >/dev/null && return 0; sleep 0.1; done
  fail "node $node did not come up"
}

# --- the first node is initialised; the others get a copy of its keys (each node's data
# directory holds the master key and the audit signing key; the rest is shared).
ADMIN=$($SLUICE init --data-dir "$work/node1" | sed -n 's/^admin token: //p')
SECOND_ADMIN=$($SLUICE admin add --data-dir "$work/node1" --name "duty officer" | sed -n 's/^token: //p')
for node in 2 3; do cp -a "$work/node1" "$work/node$node"; done
for node in 1 2 3; do start_node "$node"; done
URL=$(node_url 1)
# shellcheck source=tests/scenario.sh
source "$(dirname "$0")/scenario.sh"
make_scenario
mkdir -p "$work/acknowledged"

# --- four clients send RUNS runs, run i to node i mod 3 + 1; a run whose node is down or
# dies under it is not acknowledged (its client sees the connection fail).
client() {
  local first=$1 i response node
  for ((i = first; i < RUNS; i += 4)); do
    node=$((i % 3 + 1))
    if response=$(URL=$(node_url "$node") api "$OPERATOR" POST /v1/runs "{\"authorisation_id\":$AUTHORISATION,\"model_id\":$MODEL}" 2>/dev/null); then
      printf '%s\n' "$response" > "$work/acknowledged/$(jq .run_id <<<"$response").json"
    else
      echo "$i" >> "$work/refused.$first"
    fi
  done
}
for first in 0 1 2 3; do client "$first" & loads+=($!); done

# --- mid-way: a checkpoint is kept, node 2 is killed, and started again a second later.
while [ "$(ls "$work/acknowledged" | wc -l)" -lt $((RUNS / 3)) ]; do
  kill -0 "${loads[0]}" 2>/dev/null || fail "the clients stopped before a third of the runs"
  sleep 0.05
done
api "$REGULATOR" GET "/v1/audit/checkpoint?fresh=true" | jq -r .checkpoint > "$work/kept-checkpoint.txt"
kill -9 "${servers[2]}"
wait "${servers[2]}" 2>/dev/null || true
killed_after=$(ls "$work/acknowledged" | wc -l)
sleep 1
start_node 2
for load in "${loads[@]}"; do wait "$load"; done
loads=()
acknowledged=$(ls "$work/acknowledged" | wc -l)
refused=$(cat "$work"/refused.* 2>/dev/null | wc -l)
echo "$RUNS runs sent: $acknowledged acknowledged, $refused refused or cut off; node 2 killed after $killed_after"
[ "$acknowledged" -ge $((RUNS / 2)) ] || fail "only $acknowledged of $RUNS runs were acknowledged"

# --- every run ended exactly once, by now: a run the kill left queued is claimed by a live
# node's dispatcher; one it cut off mid-way is settled by the node that restarts, or by a
# live node's sweep (every 10 s) once the dead node's lease is gone.
export_when_runs_ended "$work/export.jsonl"
check_runs_and_ledger "$work/export.jsonl"
interrupted=$(jq -s '[.[] | select(.action == "run.release" and .outcome != "ok")] | length' "$work/export.jsonl")
echo "$interrupted runs were settled as interrupted"

# --- every acknowledged result: its release is logged, its receipt verifies offline, and
# every node reads it back identical.
for file in "$work"/acknowledged/*.json; do
  id=$(basename "$file" .json)
  jq -e '.receipt' "$file" >/dev/null || fail "run $id was acknowledged without a receipt"
  $SLUICE audit verify-receipt "$file" --public-key "$KEY" >/dev/null || fail "the receipt of run $id does not verify"
  jq -se --arg object "run:$id" 'any(.[]; .action == "run.release" and .object == $object and .outcome == "ok")' \
    "$work/export.jsonl" >/dev/null || fail "run $id has no logged release"
  for node in 1 2 3; do
    URL=$(node_url "$node") api "$OPERATOR" GET "/v1/runs/$id" | jq -S '{run_id, outputs}' \
      | cmp -s - <(jq -S '{run_id, outputs}' "$file") || fail "run $id reads back differently from node $node"
  done
done
echo "$acknowledged receipts verify and read back identical from all three nodes"

# --- one log: every node exports the same entries (each later export holds the earlier
# exports' own entries too, and ends with the checkpoint its node signed), and it verifies.
for node in 1 2 3; do
  URL=$(node_url "$node") api "$REGULATOR" GET /v1/audit/export > "$work/export$node.jsonl"
  jq -c 'select(.seq != null)' "$work/export$node.jsonl" > "$work/entries$node.jsonl"
done
lines=$(wc -l < "$work/entries1.jsonl")
for node in 2 3; do
  cmp -s <(head -n "$lines" "$work/entries$node.jsonl") "$work/entries1.jsonl" \
    || fail "node $node exports a different log from node 1"
done
$SLUICE audit verify "$work/export3.jsonl" --public-key "$KEY" --trusted-checkpoint "$work/kept-checkpoint.txt" >/dev/null \
  || fail "the exported log does not verify or does not extend the checkpoint kept before the kill"
echo "nodes test: 3 nodes, $RUNS runs, one SIGKILL; one log of $(wc -l < "$work/entries3.jsonl") entries verifies and extends the kept checkpoint"
