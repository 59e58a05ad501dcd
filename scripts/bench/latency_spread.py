#!/usr/bin/env python3
"""Where a run's latency spread comes from, from a shop_mix trace.

    cargo bench -p bazaar --bench shop_mix -- --clients 64 --modes embedded \
        --max-concurrent-requests 4 --trace /tmp/mix-trace
    python3 scripts/bench/latency_spread.py /tmp/mix-trace/embedded-64-4.tsv

A closed loop of N customers has N requests in the shop at every moment,
so the mean latency is N over the throughput (Little's law). What sets the
p99 is how much a request's latency moves around that mean, and this says
which of two causes it is:

- requests sent at the same moment taking different times (their own
  work, or an unfair order of service): the spread *within* windows of a
  few milliseconds of sending;
- the whole shop going faster or slower from one moment to the next (the
  work queued ahead of a request, the machine): the spread of the windows'
  medians, and of the requests answered per 100 ms.

A traced run's host adds its own timing (`bazaar up --server-timing`):
for the slowest 1%, how much was the wait at the door and how much the
time after it.

Standard library only, so it runs wherever the bench does.
"""
import statistics
import sys
from collections import defaultdict


def quantile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def line(label, values):
    values = sorted(values)
    qs = " ".join(f"p{int(q * 100)} {quantile(values, q):6.1f}" for q in (0.01, 0.1, 0.5, 0.9, 0.99))
    return f"{label:44} {qs}"


def main(path, window_ms=5.0):
    rows, timed = [], []
    with open(path) as trace:
        next(trace)  # the header
        for row in trace:
            # Traces of the host's --server-timing add queue_ms and app_ms.
            sent, latency, kind, *timing = row.rstrip("\n").split("\t")
            rows.append((float(sent), float(latency), kind))
            if len(timing) == 2 and all(timing):
                timed.append((float(latency), kind, float(timing[0]), float(timing[1])))
    if not rows:
        sys.exit(f"{path}: no requests in the trace")
    latencies = sorted(latency for _, latency, _ in rows)
    duration_s = (max(s + l for s, l, _ in rows) - min(s for s, _, _ in rows)) / 1e3
    print(f"{path}: {len(rows)} requests in {duration_s:.1f} s, {len(rows) / duration_s:.0f} req/s")
    print(f"latency (ms): mean {statistics.fmean(latencies):.1f}, "
          f"p50 {quantile(latencies, 0.5):.1f}, p99 {quantile(latencies, 0.99):.1f}")
    by_kind = defaultdict(list)
    for _, latency, kind in rows:
        by_kind[kind].append(latency)
    for kind, values in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        values.sort()
        print(f"  {kind:16} {len(values):7}  p50 {quantile(values, 0.5):6.1f}  p99 {quantile(values, 0.99):6.1f}")

    # The reads (cache hits, all of one size of work) by when they were sent.
    windows = defaultdict(list)
    for sent, latency, kind in rows:
        if kind in ("browse catalog", "view product", "search"):
            windows[int(sent // window_ms)].append(latency)
    within, medians = [], []
    for values in windows.values():
        if len(values) < 5:
            continue
        median = statistics.median(values)
        medians.append(median)
        within.extend(v - median for v in values)
    print(f"\nreads, grouped by the {window_ms:g} ms in which they were sent (ms):")
    print(line("  a read's latency minus its window's median", within))
    print(line("  the windows' medians", medians))

    if timed:
        # Where the slowest requests spent their time: waiting at the door
        # (the work queued ahead of them) or after it (their own work, run
        # beside the others admitted; the rest is the loopback and client).
        slowest = sorted(timed)[int(0.99 * len(timed)):]
        print(f"\nthe host's timing (--server-timing), ms:")
        print(line("  every request: waiting at the door", [q for _, _, q, _ in timed]))
        print(line("  every request: admitted to response head", [a for _, _, _, a in timed]))
        print(line(f"  the slowest 1% ({len(slowest)}): at the door", [q for _, _, q, _ in slowest]))
        print(line(f"  the slowest 1%: admitted to response head", [a for _, _, _, a in slowest]))
        kinds = defaultdict(int)
        for _, kind, _, _ in slowest:
            kinds[kind] += 1
        print("  the slowest 1% by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])))

    answered = defaultdict(int)
    for sent, latency, _ in rows:
        answered[int((sent + latency) // 100)] += 1
    counts = [answered[w] for w in sorted(answered)][1:-1]
    if counts:
        print(line("\nrequests answered per 100 ms", counts))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1], *(float(a) for a in sys.argv[2:]))
