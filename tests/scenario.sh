# Shared by the shell tests (tests/crash.sh, tests/nodes.sh): the API helpers and the
# scenario every one of them starts from, made through the HTTP API as in the walkthrough.
# Source it after setting URL (a node), work (a scratch directory), ADMIN and SECOND_ADMIN
# (two administrators' tokens: the second approves what the first creates).

api() { curl -sS --fail-with-body -X "$2" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' "$URL$3" ${4:+--data-binary "$4"}; }
organisation() { api "$ADMIN" POST /v1/organisations "{\"name\":\"$1\"}" | jq .id; }
principal() {
  local created; created=$(api "$ADMIN" POST /v1/principals "$1")
  if [ "$(jq -r .state <<<"$created")" = pending_approval ]; then
    created=$(api "$SECOND_ADMIN" POST "/v1/principals/$(jq .id <<<"$created")/approve" '{}')
  fi
  jq -r .token <<<"$created"
}
ingest() { curl -sS --fail-with-body -X PUT -H "Authorization: Bearer $PROVIDER" -H 'Content-Type: text/csv' --data-binary @"$work/small.csv" "$URL/v1/datasets/$DATASET/data"; }

# The five roles, a vehicles dataset of SCENARIO_ROWS rows (default 2,000) with a budget of 1000, an authorisation
# for all of it, and an approved vehicle-risk model. Sets PROVIDER, OPERATOR, BUREAU,
# DEPARTMENT, REGULATOR, CAC, DATASET, AUTHORISATION, MODEL and KEY (the audit public key).
make_scenario() {
  $SLUICE examples write "$work/examples" >/dev/null
  head -n $((${SCENARIO_ROWS:-2000} + 1)) "$work/examples/vehicles.csv" > "$work/small.csv"
  local police operators bureau_org now later application
  police=$(organisation "Police")
  operators=$(organisation "Operator Co.")
  bureau_org=$(organisation "Data Bureau")
  CAC=$(organisation "Cyberspace Administration")
  PROVIDER=$(principal "{\"name\":\"provider\",\"role\":\"provider\",\"organisation_id\":$police}")
  OPERATOR=$(principal "{\"name\":\"operator\",\"role\":\"operator\",\"organisation_id\":$operators,\"licence\":{\"number\":\"L-1\",\"valid_from\":\"2026-01-01T00:00:00Z\",\"valid_until\":\"2030-01-01T00:00:00Z\"}}")
  BUREAU=$(principal "{\"name\":\"bureau\",\"role\":\"reviewer\",\"reviewer_kind\":\"data_bureau\",\"organisation_id\":$bureau_org}")
  DEPARTMENT=$(principal "{\"name\":\"department\",\"role\":\"reviewer\",\"reviewer_kind\":\"providing_department\",\"organisation_id\":$police}")
  REGULATOR=$(principal "{\"name\":\"inspector\",\"role\":\"regulator\",\"organisation_id\":$CAC}")
  DATASET=$(api "$PROVIDER" POST /v1/datasets "$(jq -n --rawfile schema "$work/examples/vehicles.schema.toml" '{schema: $schema, epsilon_total: 1000}')" | jq .id)
  ingest >/dev/null
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  later=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
  application=$(api "$OPERATOR" POST /v1/applications "{\"dataset_id\":$DATASET,\"purpose\":\"fault test\",\"use_scope\":\"aggregates\",\"security_measures\":\"sandbox\",\"columns\":[\"vehicle_age_years\",\"violations_12m\",\"accidents_5y\",\"insured_value_cny\"],\"valid_from\":\"$now\",\"valid_until\":\"$later\",\"epsilon\":1000}" | jq .id)
  api "$BUREAU" POST "/v1/applications/$application/reviews" '{"approve":true}' >/dev/null
  AUTHORISATION=$(api "$DEPARTMENT" POST "/v1/applications/$application/reviews" '{"approve":true}' | jq .authorisation_id)
  # The body goes through a file: a module's base64 in an argument overflows above ~96 KB.
  jq -n --rawfile wasm <(base64 -w0 "$work/examples/vehicle-risk.wasm") \
    --rawfile manifest "$work/examples/vehicle-risk.manifest.toml" --argjson authorisation "$AUTHORISATION" \
    '{authorisation_id: $authorisation, module_base64: $wasm, manifest: $manifest}' > "$work/model.json"
  MODEL=$(api "$OPERATOR" POST /v1/models "@$work/model.json" | jq .id)
  api "$BUREAU" POST "/v1/models/$MODEL/reviews" '{"approve":true,"checklist":{"usability":true,"consistency":true,"compliance":true,"security":true}}' >/dev/null
  KEY=$(curl -sS "$URL/v1/audit/public-key" | jq -r .public_key)
}

# Exports the log to `$1` once every charged run has ended — runs a kill left queued are
# claimed and run by a node's dispatcher, runs it cut off mid-way are settled as
# interrupted (at start-up, or by a live node's sweep every 10 s) — waiting up to 20 s.
export_when_runs_ended() {
  local export=$1 started ended
  for _ in $(seq 1 40); do
    api "$REGULATOR" GET /v1/audit/export > "$export"
    started=$(jq -s '[.[] | select(.action == "run.start" and .outcome == "ok")] | length' "$export")
    ended=$(jq -s '[.[] | select(.action == "run.release")] | length' "$export")
    [ "$started" = "$ended" ] && return 0
    sleep 0.5
  done
  fail "$started charged runs started, $ended ended, 20 s after the load stopped"
}

# Fails unless every charged `run.start` in `$1` (an export) has exactly one `run.release`
# and the authorisation's ledger equals the charges the log records. Prints the counts.
check_runs_and_ledger() {
  local export=$1 started ended twice charged spent
  started=$(jq -s '[.[] | select(.action == "run.start" and .outcome == "ok")] | length' "$export")
  ended=$(jq -s '[.[] | select(.action == "run.release")] | length' "$export")
  [ "$started" = "$ended" ] || fail "$started charged runs started, $ended ended: a run was left running"
  twice=$(jq -s '[.[] | select(.action == "run.release") | .object] | group_by(.) | map(select(length > 1)) | length' "$export")
  [ "$twice" = 0 ] || fail "$twice runs were released more than once"
  charged=$(jq -s "[.[] | select(.action == \"run.start\" and .outcome == \"ok\" and .details.authorisation == \"$AUTHORISATION\") | .details.epsilon_charged | tonumber] | add // 0" "$export")
  spent=$(api "$OPERATOR" GET "/v1/authorisations/$AUTHORISATION/budget" | jq .epsilon_spent)
  jq -ne "($charged - $spent) | fabs < 1e-9" >/dev/null || fail "the ledger says $spent spent, the log $charged"
  echo "$started runs started and ended once each; ledger $spent = log $charged"
}
