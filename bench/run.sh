#!/usr/bin/env bash
# The end-to-end benchmark of the reference job (ARCHITECTURE.md, `bench/`):
#
#   bench/run.sh                 # 1K, 1M and 10M rows, release build
#   bench/run.sh 100000000       # chosen sizes
#   bench/run.sh --smoke         # 1K and 100K rows on the debug build (.ci/run)
#
# For each size: generate the vehicles CSV (deterministic), run sluice-bench (ingest, the
# run through the API, the same work without it, the native floor), convert the CSV to
# Parquet and run the Python polars + OpenDP peers on it (hand-tuned, and OpenDP's Context API); then print one table and write a
# plot of time and memory against rows. The peer's virtual environment is made here.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false
sizes=()
for arg in "$@"; do
  case $arg in
    --smoke) smoke=true ;;
    *[!0-9]* | '') echo "usage: bench/run.sh [--smoke] [ROWS...]" >&2; exit 2 ;;
    *) sizes+=("$arg") ;;
  esac
done
if $smoke; then
  [[ ${#sizes[@]} -gt 0 ]] || sizes=(1000 100000)
  profile=debug
  # With the features the tests are built with, so after `cargo test --workspace` (as in
  # CI) nothing is compiled again; `-p sluice-bench` alone would rebuild most of the tree.
  cargo build -q --workspace --bins --tests
else
  [[ ${#sizes[@]} -gt 0 ]] || sizes=(1000 1000000 10000000)
  profile=release
  cargo build -q --release -p sluice-bench
fi

target_dir=${CARGO_TARGET_DIR:-target}
out=${SLUICE_BENCH_OUT:-bench/results}
venv=${SLUICE_BENCH_VENV:-bench/.venv}
mkdir -p "$out"
if [[ ! -x $venv/bin/python ]]; then
  echo "making the peer's virtual environment in $venv" >&2
  python3 -m venv "$venv"
fi
# pyarrow: OpenDP's Context API hands its released frames over through Arrow.
"$venv/bin/pip" install -q --disable-pip-version-check "polars==1.36.*" "opendp==0.16.*" "matplotlib==3.*" "pyarrow>=20,<27"

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
results="$out/results-$profile.jsonl"
: > "$results"
for rows in "${sizes[@]}"; do
  echo "== $rows rows" >&2
  csv="$work/vehicles-$rows.csv"
  sluice=$("$target_dir/$profile/sluice-bench" --rows "$rows" --csv "$csv" --work-dir "$work")
  "$venv/bin/python" bench/peer.py --prepare "$csv"
  peer=$("$venv/bin/python" bench/peer.py "$csv")
  context=$("$venv/bin/python" bench/peer.py --context "$csv")
  echo "{\"profile\": \"$profile\", \"sluice\": $sluice, \"peer\": $peer, \"peer_context\": $context}" >> "$results"
  rm -f "$csv" "${csv%.csv}.parquet"
done
"$venv/bin/python" bench/report.py "$results" "$out/bench-$profile.png"
