#!/usr/bin/env bash
# Schemathesis against a live `sluice serve`: requests generated from /v1/openapi.json
# (valid and invalid), as an administrator and as an operator, a bounded number of
# examples per operation. It fails on any 5xx and on any answer that does not match the
# document (status, headers, body schema).
#   SLUICE=target/debug/sluice PORT=18097 bash tests/schemathesis.sh [EXAMPLES]
# It installs schemathesis from PyPI into a virtual environment ($SLUICE_ST_VENV or one
# made for the run).
set -euo pipefail
SLUICE=${SLUICE:-"cargo run -q --bin sluice --"}
PORT=${PORT:-18097}
EXAMPLES=${1:-10}
URL="http://127.0.0.1:$PORT"
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

venv=${SLUICE_ST_VENV:-$work/venv}
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q schemathesis
fi

ADMIN=$($SLUICE init --data-dir "$work/data" | sed -n 's/^admin token: //p')
$SLUICE serve --data-dir "$work/data" --listen "127.0.0.1:$PORT" 2>"$work/server.log" &
server=$!
for _ in $(seq 1 100); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.2; done

# A regulator, to reach the audit and report endpoints with a role that may read them.
api() { curl -sS --fail-with-body -X "$2" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' "$URL$3" ${4:+--data-binary "$4"}; }
CAC=$(api "$ADMIN" POST /v1/organisations '{"name":"Cyberspace Administration"}' | jq .id)
REGULATOR=$(api "$ADMIN" POST /v1/principals "{\"name\":\"inspector\",\"role\":\"regulator\",\"organisation_id\":$CAC}" | jq -r .token)

# Replacing, revoking or disabling a token (the generated ids include the caller's own)
# would end the run's session; key rotation is tested elsewhere and only slows this down.
# One worker: CPython 3.11 can fail parsing in threads (hypothesis reads its lambdas), which
# is the tool's error, not the API's.
run() {
  "$venv/bin/schemathesis" run "$URL/v1/openapi.json" \
    --header "Authorization: Bearer $1" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --exclude-path /v1/token/rotate --exclude-path /v1/keys/rotate \
    --exclude-path-regex '^/v1/principals/\{id\}/(token|disable)$' \
    --max-examples "$EXAMPLES" --workers 1 --no-color \
    --suppress-health-check all
}
status=0
for token in "$ADMIN" "$REGULATOR"; do
  run "$token" || status=$?
done
if [ "$status" -ne 0 ]; then
  echo "schemathesis found failures; the server's log:" >&2
  grep -iE "error|panic" "$work/server.log" | tail -20 >&2 || true
fi
exit "$status"
