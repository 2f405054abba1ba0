#!/usr/bin/env bash
# The load test: wrk against `sluice serve` on loopback, bounded in time, on an audited read
# (`GET /v1/catalogue`: every request writes an audit entry) and on an audited write
# (`POST /v1/organisations`). It reports throughput and p50/p99, then checks that the
# gateway is still whole after wrk's connections closed mid-request: a write succeeds at
# once, and the exported log verifies against the pinned key. Last, a graceful stop: SIGTERM
# ends the gateway with status 0 after sealing a checkpoint over every entry, which a
# restarted gateway serves.
#
#   SLUICE=target/debug/sluice bash tests/load.sh [SECONDS]      (.ci/run: 5 s each)
set -euo pipefail
SLUICE=${SLUICE:-target/debug/sluice}
SECONDS_EACH=${1:-5}
PORT=${PORT:-18091}
URL="http://127.0.0.1:$PORT"
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "load test: $*" >&2; tail -20 "$work/server.log" >&2; exit 1; }
command -v wrk >/dev/null || fail "wrk is not installed (Debian: apt-get install wrk)"

ADMIN=$($SLUICE init --data-dir "$work/data" | sed -n 's/^admin token: //p')
# A stop keeps serving for 5 s after readiness turns off (the grace a load balancer needs).
SLUICE_SHUTDOWN_GRACE_SECONDS=5 $SLUICE serve --data-dir "$work/data" --listen "127.0.0.1:$PORT" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 150); do curl -sf "$URL/readyz" >/dev/null && break; sleep 0.1; done
[ "$(curl -sS "$URL/readyz" | jq -c .)" = '{"ready":true}' ] || fail "the gateway did not become ready"
api() { curl -sS --fail-with-body -X "$2" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' "$URL$3" ${4:+-d "$4"}; }
CAC=$(api "$ADMIN" POST /v1/organisations '{"name":"Cyberspace Administration"}' | jq .id)
REGULATOR=$(api "$ADMIN" POST /v1/principals "{\"name\":\"inspector\",\"role\":\"regulator\",\"organisation_id\":$CAC}" | jq -r .token)
KEY=$(curl -sS "$URL/v1/audit/public-key" | jq -r .public_key)

# Each POST names a new organisation (a name may be used once).
cat > "$work/post.lua" <<'EOF'
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function init(args)
  counter = 0
end
function request()
  counter = counter + 1
  local body = string.format('{"name":"load organisation %d-%d"}', id, counter)
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("LOAD_TOKEN")}
  return wrk.format("POST", "/v1/organisations", headers, body)
end
EOF
measure() {
  local what=$1; shift
  LOAD_TOKEN=$ADMIN wrk -t2 -c16 -d"${SECONDS_EACH}s" --latency -H "Authorization: Bearer $ADMIN" "$@" > "$work/wrk.txt" \
    || fail "wrk failed on $what"
  local rate p50 p99 errors
  rate=$(awk '/^Requests\/sec/ { print $2 }' "$work/wrk.txt")
  p50=$(awk '$1 == "50%" { print $2 }' "$work/wrk.txt")
  p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk.txt")
  errors=$(awk '/Non-2xx or 3xx responses/ { print $NF }' "$work/wrk.txt")
  echo "$what: $rate requests/s, p50 $p50, p99 $p99, non-2xx ${errors:-0}"
  [ "${errors:-0}" = 0 ] || fail "$what: $errors requests were refused under load"
}
measure "GET /v1/catalogue (audited read)" "$URL/v1/catalogue"
measure "POST /v1/organisations (audited write)" -s "$work/post.lua" "$URL"

# wrk closed its connections mid-request; the next write must not wait for a lock.
timeout 5 curl -sS --fail-with-body -X POST -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  "$URL/v1/organisations" -d '{"name":"after the load"}' >/dev/null || fail "a write after the load failed or hung"
api "$REGULATOR" GET /v1/audit/export > "$work/export.jsonl"
$SLUICE audit verify "$work/export.jsonl" --public-key "$KEY" >/dev/null || fail "the log does not verify after the load"
echo "load test: a write succeeds after the load; $(grep -c '"seq"' "$work/export.jsonl") entries verify"

# A graceful stop: SIGTERM drains the requests under way and seals a last checkpoint over
# every entry, so the whole log is signed when the gateway is down.
# The export sealed a checkpoint over its own entries; three writes after it are covered only
# if the stop seals them.
entries=$(grep -c '"seq"' "$work/export.jsonl")
for n in 1 2 3; do api "$ADMIN" POST /v1/organisations "{\"name\":\"before the stop $n\"}" >/dev/null; done
entries=$((entries + 3))
kill -TERM "$server"
# Readiness turns off at once; a request sent within the grace period is still served.
for _ in $(seq 1 20); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" = 503 ] && break; sleep 0.05
done
[ "$(curl -sS "$URL/readyz" | jq -r .reason)" = stopping ] || fail "readiness did not turn off on SIGTERM"
api "$ADMIN" POST /v1/organisations '{"name":"during the grace"}' >/dev/null || fail "a write in the grace period failed"
entries=$((entries + 1))
echo "load test: readiness answered 503 stopping on SIGTERM; a write in the grace period was served"
status=0
for _ in $(seq 1 1000); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
kill -0 "$server" 2>/dev/null && fail "the gateway did not stop within 100 s of SIGTERM"
wait "$server" || status=$?
server=""
[ "$status" = 0 ] || fail "the gateway exited with status $status on SIGTERM"
grep -q "sluice gateway stopped" "$work/server.log" || fail "the gateway did not log its stop"
$SLUICE serve --data-dir "$work/data" --listen "127.0.0.1:$PORT" >>"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 150); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.1; done
covered=$(api "$REGULATOR" GET /v1/audit/checkpoint | jq .size)
[ "$covered" -ge "$entries" ] || fail "the last checkpoint covers $covered entries, the log had $entries before the stop"
echo "load test: SIGTERM stopped the gateway cleanly; its last checkpoint covers all $covered entries"
