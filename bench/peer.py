"""The peer a data scientist would pick instead of Sluice: Python polars + OpenDP, on the
same rows in plaintext Parquet (no encryption, no sandbox, no audit).

    python bench/peer.py VEHICLES.csv

The reference job, as `bench/reference.manifest.toml` declares it for Sluice: per district
of the schema's domain, a DP count of high-risk vehicles (epsilon 0.4), the DP mean risk
score (0.4: a noisy sum over a noisy count) and the DP sum of expected claims (0.2), with
OpenDP's Laplace (discrete for counts) at the scales its privacy maps give for sized,
bounded sums under the same neighbouring relation (one vehicle's row replaced: symmetric
distance 2), each district's share divided over the districts one row can touch (2).

`--prepare VEHICLES.csv` converts the CSV to Parquet beside it (not timed, in a process of
its own); then reading the Parquet file and the job are timed. Prints one JSON object: seconds and peak RSS (MiB).
"""

import json
import resource
import sys
import time
from pathlib import Path

import opendp.prelude as dp
import polars as pl

dp.enable_features("contrib")

DISTRICTS = [
    "honghuagang", "huichuan", "bozhou", "tongzi", "suiyang", "zhengan", "daozhen",
    "wuchuan", "fenggang", "meitan", "yuqing", "xishui", "chishui", "renhuai",
]
HIGH_RISK_SCORE = 0.5
CLAIM_RATE = 0.05
DISTANCE = 2  # one row replaced
TOUCHED = 2  # groups one replaced row can change


def parquet_of(csv: Path) -> Path:
    parquet = csv.with_suffix(".parquet")
    if not parquet.exists():
        pl.read_csv(csv).write_parquet(parquet)
    return parquet


def laplace_scale(rows: int, lower, upper, epsilon: float) -> float:
    """The Laplace scale OpenDP certifies for a sized bounded sum over `rows` values."""
    domain = dp.vector_domain(dp.atom_domain(bounds=(lower, upper)), size=rows)
    summed = dp.t.make_sum(domain, dp.symmetric_distance())
    return dp.binary_search_param(lambda scale: summed >> dp.m.then_laplace(scale), d_in=DISTANCE, d_out=epsilon)


def job(parquet: Path) -> dict:
    frame = pl.read_parquet(parquet)
    rows = frame.height
    linear = (
        -3.2
        + 0.09 * pl.col("vehicle_age_years").fill_null(0.0)
        + 0.22 * pl.col("violations_12m").fill_null(0).cast(pl.Float64)
        + 0.65 * pl.col("accidents_5y").fill_null(0).cast(pl.Float64)
    )
    score = 1.0 / (1.0 + (-linear).exp())
    scored = frame.select(
        pl.col("district"),
        (score > HIGH_RISK_SCORE).cast(pl.Int64).alias("high_risk"),
        score.clip(0.0, 1.0).alias("score"),
        (score * pl.col("insured_value_cny").fill_null(0.0) * CLAIM_RATE).clip(0.0, 20000.0).alias("claim"),
    )
    # Each group's statistics in one pass; the noise is OpenDP's at the scales it
    # certifies for a sized sum over all rows with the other groups' rows as 0.
    groups = scored.group_by("district").agg(
        pl.col("high_risk").sum(), pl.col("score").sum(), pl.col("claim").sum(), pl.len().alias("n")
    )
    by_name = {row["district"]: row for row in groups.iter_rows(named=True)}
    integer = (dp.atom_domain(T=int), dp.absolute_distance(T=int))
    real = (dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float))
    noise_int = dp.m.make_laplace(*integer, laplace_scale(rows, 0, 1, 0.4 / TOUCHED))
    noise_size = dp.m.make_laplace(*integer, laplace_scale(rows, 0, 1, 0.2 / TOUCHED))
    noise_score = dp.m.make_laplace(*real, laplace_scale(rows, 0.0, 1.0, 0.2 / TOUCHED))
    noise_claim = dp.m.make_laplace(*real, laplace_scale(rows, 0.0, 20000.0, 0.2 / TOUCHED))
    released = {}
    for district in DISTRICTS:
        row = by_name.get(district, {"high_risk": 0, "score": 0.0, "claim": 0.0, "n": 0})
        size = max(noise_size(int(row["n"])), 1)
        released[district] = {
            "high_risk_vehicles": noise_int(int(row["high_risk"])),
            "mean_risk_score": min(max(noise_score(float(row["score"])) / size, 0.0), 1.0),
            "expected_claims_cny": noise_claim(float(row["claim"])),
        }
    return {"rows": rows, "released": released}


def main() -> None:
    if sys.argv[1] == "--prepare":
        # In a process of its own, so the conversion does not count in the job's peak RSS.
        parquet_of(Path(sys.argv[2]))
        return
    csv = Path(sys.argv[1])
    parquet = parquet_of(csv)
    started = time.perf_counter()
    result = job(parquet)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"rows": result["rows"], "peer_s": seconds, "peer_peak_mib": peak_mib,
                      "districts": len(result["released"])}))


if __name__ == "__main__":
    main()
