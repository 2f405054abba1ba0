#!/usr/bin/env bash
# The README walkthrough, runnable: the whole Sluice lifecycle with curl against
# `sluice serve`. CI runs it, so the README's commands stay true.
#   bash examples/walkthrough.sh            (uses `cargo run --bin sluice`)
#   SLUICE=target/debug/sluice PORT=18080 bash examples/walkthrough.sh
set -euo pipefail
SLUICE=${SLUICE:-"cargo run -q --bin sluice --"}
PORT=${PORT:-8080}
URL="http://127.0.0.1:$PORT"
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# 1. Example files, a data directory, and the gateway.
$SLUICE examples write "$work/examples"
ADMIN=$($SLUICE init --data-dir "$work/data" | sed -n 's/^admin token: //p')
# The regulator's witness, on its own machine: a key and a name; the gateway accepts its
# cosignatures.
WITNESS=$($SLUICE audit witness init --state "$work/witness" --name cac.example/witness | sed -n 's/^vkey: //p')
SLUICE_WITNESSES="$WITNESS" $SLUICE serve --data-dir "$work/data" --listen "127.0.0.1:$PORT" 2>"$work/server.log" &
server=$!
for _ in $(seq 1 100); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.2; done

# A JSON call with a token: api TOKEN METHOD PATH [BODY]
api() { curl -sS --fail-with-body -X "$2" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' "$URL$3" ${4:+--data-binary "$4"}; }
organisation() { api "$ADMIN" POST /v1/organisations "{\"name\":\"$1\"}" | jq .id; }
# A principal's token: created by the admin; a reviewer or a licensed operator waits for
# the second administrator's approval (the two-person rule) before it gets one.
principal() {
  local created; created=$(api "$ADMIN" POST /v1/principals "$1")
  if [ "$(jq -r .state <<<"$created")" = pending_approval ]; then
    created=$(api "$SECOND_ADMIN" POST "/v1/principals/$(jq .id <<<"$created")/approve" '{}')
  fi
  jq -r .token <<<"$created"
}

# 2. A second administrator is added at the host; the admin creates the organisations and
#    the principals; each gets a token (only its hash is stored).
SECOND_ADMIN=$($SLUICE admin add --data-dir "$work/data" --name "duty officer" | sed -n 's/^token: //p')
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
later=$(date -u -d '+90 days' +%Y-%m-%dT%H:%M:%SZ)
POLICE=$(organisation "Zunyi Traffic Police Detachment")
QIANBEI=$(organisation "Qianbei Data Operations Co.")
BIGDATA=$(organisation "Zunyi Big Data Development Administration")
CAC=$(organisation "Zunyi Cyberspace Administration")
PROVIDER=$(principal "{\"name\":\"traffic data office\",\"role\":\"provider\",\"organisation_id\":$POLICE}")
OPERATOR=$(principal "{\"name\":\"risk team\",\"role\":\"operator\",\"organisation_id\":$QIANBEI,\"licence\":{\"number\":\"ZY-SJYY-2026-017\",\"valid_from\":\"2026-01-01T00:00:00Z\",\"valid_until\":\"2030-01-01T00:00:00Z\"}}")
BUREAU=$(principal "{\"name\":\"demand desk\",\"role\":\"reviewer\",\"reviewer_kind\":\"data_bureau\",\"organisation_id\":$BIGDATA}")
DEPARTMENT=$(principal "{\"name\":\"release officer\",\"role\":\"reviewer\",\"reviewer_kind\":\"providing_department\",\"organisation_id\":$POLICE}")
REGULATOR=$(principal "{\"name\":\"inspector\",\"role\":\"regulator\",\"organisation_id\":$CAC}")

# 3. The provider registers the dataset and uploads the CSV; it is encrypted on ingest.
DATASET=$(api "$PROVIDER" POST /v1/datasets "$(jq -n --rawfile schema "$work/examples/vehicles.schema.toml" '{schema: $schema, epsilon_total: 10}')" | jq .id)
curl -sS --fail-with-body -X PUT -H "Authorization: Bearer $PROVIDER" -H 'Content-Type: text/csv' \
  --data-binary @"$work/examples/vehicles.csv" "$URL/v1/datasets/$DATASET/data" | jq -c .

# 4. The operator applies for one scenario; the bureau, then the department, approve.
APPLICATION=$(api "$OPERATOR" POST /v1/applications "{\"dataset_id\":$DATASET,\"purpose\":\"vehicle risk for motor insurance\",\"use_scope\":\"aggregates only\",\"security_measures\":\"sandbox, DP\",\"columns\":[\"vehicle_age_years\",\"violations_12m\",\"accidents_5y\",\"insured_value_cny\"],\"valid_from\":\"$now\",\"valid_until\":\"$later\",\"epsilon\":1.0}" | jq .id)
api "$BUREAU" POST "/v1/applications/$APPLICATION/reviews" '{"approve":true,"comment":"qualified"}' | jq -c .
AUTHORISATION=$(api "$DEPARTMENT" POST "/v1/applications/$APPLICATION/reviews" '{"approve":true}' | jq .authorisation_id)

# 5. The operator uploads the model; a reviewer (never the uploader) approves it. The
#    request body is a file (`@model.json`), never an argument: a module's base64 would
#    overflow the argument list above ~96 KB.
model_request() {
  jq -n --rawfile wasm <(base64 -w0 "$1") --rawfile manifest "$work/examples/vehicle-risk.manifest.toml" \
    --argjson authorisation "$AUTHORISATION" '{authorisation_id: $authorisation, module_base64: $wasm, manifest: $manifest}'
}
model_request "$work/examples/vehicle-risk.wasm" > "$work/model.json"
MODEL=$(api "$OPERATOR" POST /v1/models "@$work/model.json" | jq .id)
# The same recipe carries a 2 MB module (the model with a 2 MB custom section appended).
python3 - "$work/examples/vehicle-risk.wasm" "$work/big.wasm" <<'PY'
import sys
module, body = open(sys.argv[1], "rb").read(), bytes([7]) + b"padding" + bytes(2_000_000)
size, leb = len(body), bytearray()
while True:
    leb.append((size & 0x7F) | (0x80 if size >> 7 else 0))
    size >>= 7
    if not size:
        break
open(sys.argv[2], "wb").write(module + b"\x00" + bytes(leb) + body)
PY
model_request "$work/big.wasm" > "$work/big-model.json"
api "$OPERATOR" POST /v1/models "@$work/big-model.json" | jq -c '{id, state, bytes: '"$(stat -c %s "$work/big.wasm")"'}'
api "$BUREAU" GET "/v1/models/$MODEL" | jq -c .automated_results
api "$BUREAU" POST "/v1/models/$MODEL/reviews" '{"approve":true,"comment":"dummy run passed","checklist":{"usability":true,"consistency":true,"compliance":true,"security":true}}' | jq -c "{id, state}"

# 6-7. Run it twice (epsilon 0.5 each); the third run is refused: the budget is spent.
RUN=$(api "$OPERATOR" POST /v1/runs "{\"authorisation_id\":$AUTHORISATION,\"model_id\":$MODEL}" | tee "$work/run.json" | jq .run_id)
jq '.outputs[] | {name, value, ci95_half_width}' -c "$work/run.json"
api "$OPERATOR" POST /v1/runs "{\"authorisation_id\":$AUTHORISATION,\"model_id\":$MODEL}" | jq -c '{run_id, authorisation_epsilon_remaining}'
api "$OPERATOR" POST /v1/runs "{\"authorisation_id\":$AUTHORISATION,\"model_id\":$MODEL}" | jq -c . || true
api "$OPERATOR" GET "/v1/runs/$RUN" | jq -c '{run_id, epsilon_charged}'

# 8. The release's receipt verifies offline; the regulator keeps a checkpoint, exports the
#    log, verifies it against the pinned key and the kept checkpoint, and searches it.
KEY=$(curl -sS "$URL/v1/audit/public-key" | jq -r .public_key)
$SLUICE audit verify-receipt "$work/run.json" --public-key "$KEY"
# The same through the operator's client: a profile (the token from stdin), the model's
# state, the result with its receipt, and the budget.
export SLUICE_CONFIG="$work/profiles.toml"
echo "$OPERATOR" | $SLUICE login --server "$URL"
$SLUICE model status "$MODEL"
$SLUICE result "$RUN" --json > "$work/run-client.json"
$SLUICE receipt verify "$work/run-client.json" --public-key "$KEY"
$SLUICE budget "$AUTHORISATION"
$SLUICE result 999999 && exit 1 || echo "(refused, as it should be)"
api "$REGULATOR" GET /v1/audit/checkpoint | jq -r .checkpoint > "$work/kept-checkpoint.txt"
# The witness checks the latest checkpoint against what it kept (nothing yet) and cosigns
# it; the gateway stores the cosignature and serves it with the checkpoint.
api "$REGULATOR" GET "/v1/audit/witness?old=0" > "$work/witness-request.txt"
$SLUICE audit witness add-checkpoint --state "$work/witness" --log-key "$KEY" \
  --request "$work/witness-request.txt" > "$work/cosignature.txt"
api "$REGULATOR" POST /v1/audit/cosignatures "$(jq -n --rawfile line "$work/cosignature.txt" \
  --argjson size "$(sed -n 2p "$work/witness/checkpoint")" '{size: $size, cosignature: $line}')" | jq -c .
api "$REGULATOR" GET /v1/audit/export > "$work/audit.jsonl"
$SLUICE audit verify "$work/audit.jsonl" --public-key "$KEY" --trusted-checkpoint "$work/kept-checkpoint.txt" \
  --witness "$WITNESS"
SLUICE_TOKEN=$REGULATOR $SLUICE audit search --data-dir "$work/data" --action run.start --outcome denied | jq -c '{seq, reason}'

# 9. A dataset keyed by enterprise codes (unified social credit codes): ingest stores only
#    their keyed pseudonyms. A second row for the same code is refused without echoing it,
#    and no code, in any response or in the server's log, ever leaves the vault.
CANARY=91520302MA6H7T3K2T
TAX=$(api "$PROVIDER" POST /v1/datasets "$(jq -n --rawfile schema "$work/examples/enterprise-tax.schema.toml" '{schema: $schema, epsilon_total: 1}')" | jq .id)
header=enterprise_code,industry,years_operating,annual_tax_paid_cny,tax_violation
printf '%s\n%s,liquor,3,1000,false\n%s,liquor,4,2000,true\n' "$header" "$CANARY" "$(tr A-Z a-z <<<"$CANARY")" > "$work/tax.csv"
refused=$(curl -sS -X PUT -H "Authorization: Bearer $PROVIDER" -H 'Content-Type: text/csv' \
  --data-binary @"$work/tax.csv" "$URL/v1/datasets/$TAX/data")
echo "$refused" > "$work/refused.json"
jq -e -c '.error | {code, message}' "$work/refused.json"
head -2 "$work/tax.csv" > "$work/tax-one.csv"
curl -sS --fail-with-body -X PUT -H "Authorization: Bearer $PROVIDER" -H 'Content-Type: text/csv' \
  --data-binary @"$work/tax-one.csv" "$URL/v1/datasets/$TAX/data" | jq -c '{rows, version}'
api "$REGULATOR" GET /v1/catalogue | jq -c ".datasets[] | select(.id == $TAX) | .columns[0] | {name, pseudonym_of}"
api "$REGULATOR" GET "/v1/datasets/$TAX/dummy?rows=2&seed=1" > "$work/tax-dummy.csv"
api "$REGULATOR" GET /v1/audit/export > "$work/audit-after.jsonl"
for file in "$work/server.log" "$work/audit-after.jsonl" "$work/tax-dummy.csv" "$work/refused.json"; do
  [ -s "$file" ] || { echo "nothing to scan in $file" >&2; exit 1; }
  if grep -qi "MA6H7T3K2" "$file"; then echo "an enterprise code left the vault: $file" >&2; exit 1; fi
done
echo "no enterprise code in the responses, the audit log or the server's log"
