"""Prints the benchmark's table and writes its plot: python bench/report.py RESULTS.jsonl PLOT.png

Each line of RESULTS is {"profile", "sluice": sluice-bench's object, "peer": peer.py's,
"peer_context": peer.py --context's}. Ratios are within one sitting: Sluice's run and work
against the native floor, the hand-tuned peer and the OpenDP Context peer; the joined job's
work against the same job over a table already joined.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    if not lines:
        sys.exit("no results")
    profile = lines[0]["profile"]
    print(f"Reference job (per district: DP count, DP mean, DP sum; epsilon 1), {profile} build")
    header = (
        "| rows | ingest s | run s (answered) | of which delay s | work s | floor s | peer s | context peer s "
        "| work / floor | peer / work | context peer / run | run peak MiB | work peak MiB | peer peak MiB "
        "| context peer peak MiB |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for line in lines:
        s, p, c = line["sluice"], line["peer"], line["peer_context"]
        print(
            f"| {s['rows']:,} | {s['ingest_s']:.3f} | {s['run_s']:.3f} | {s['run_delay_s']:.3f} | {s['work_s']:.3f} "
            f"| {s['floor_s']:.3f} | {p['peer_s']:.3f} | {c['peer_context_s']:.3f} | {s['work_s'] / s['floor_s']:.2f} "
            f"| {p['peer_s'] / s['work_s']:.2f} | {c['peer_context_s'] / s['run_s']:.2f} | {s['run_peak_mib']:.0f} "
            f"| {s['work_peak_mib']:.0f} | {p['peer_peak_mib']:.0f} | {c['peer_context_peak_mib']:.0f} |"
        )
    print()
    print(
        "Joined job (enterprise credit per industry over the tax bureau's and the social-insurance bureau's "
        f"datasets joined on the enterprise code), {profile} build"
    )
    header = (
        "| enterprises | insured accounts | joined work s | pre-joined work s (parts) | joined / pre-joined "
        "| joined peak MiB | pre-joined peak MiB | joined run s (answered) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for line in lines:
        s, j = line["sluice"], line["sluice"]["joined"]
        print(
            f"| {s['rows']:,} | {j['insured']:,} | {j['work_s']:.3f} | {j['prejoined_work_s']:.3f} ({j['prejoined_parts']}) "
            f"| {j['work_s'] / j['prejoined_work_s']:.2f} | {j['work_peak_mib']:.0f} | {j['prejoined_work_peak_mib']:.0f} "
            f"| {j['run_s']:.3f} |"
        )
    rows = [line["sluice"]["rows"] for line in lines]
    figure, (times, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, values in [
        ("Sluice run, answered (with its visibility delay)", [line["sluice"]["run_s"] for line in lines]),
        ("Sluice work (decrypt, sandbox, DP release)", [line["sluice"]["work_s"] for line in lines]),
        ("native floor (decrypt, compute)", [line["sluice"]["floor_s"] for line in lines]),
        ("peer: polars + OpenDP scales, hand-tuned", [line["peer"]["peer_s"] for line in lines]),
        ("peer: OpenDP Context API on polars", [line["peer_context"]["peer_context_s"] for line in lines]),
    ]:
        times.plot(rows, values, marker="o", label=label)
    times.set(xscale="log", yscale="log", xlabel="rows", ylabel="seconds", title="Time")
    times.legend(fontsize=7)
    for label, values in [
        ("Sluice run", [line["sluice"]["run_peak_mib"] for line in lines]),
        ("Sluice work", [line["sluice"]["work_peak_mib"] for line in lines]),
        ("peer, hand-tuned", [line["peer"]["peer_peak_mib"] for line in lines]),
        ("peer, OpenDP Context", [line["peer_context"]["peer_context_peak_mib"] for line in lines]),
    ]:
        memory.plot(rows, values, marker="o", label=label)
    memory.set(xscale="log", xlabel="rows", ylabel="peak RSS, MiB", title="Memory")
    memory.legend(fontsize=7)
    figure.suptitle(f"Sluice reference job ({profile} build)")
    figure.tight_layout()
    figure.savefig(sys.argv[2], dpi=110)
    print(f"plot: {sys.argv[2]}")


if __name__ == "__main__":
    main()
