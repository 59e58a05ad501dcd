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
for every request and for the slowest 1%, how long it lay unread (from
its sending to the host reading its head, by the machine's wall clock),
how long it waited at the door, how long it then took to its response
head, and the rest (the body, and the customer's thread reading it).

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
            # Traces of the host's --server-timing add read_ms, queue_ms
            # and app_ms.
            sent, latency, kind, *timing = row.rstrip("\n").split("\t")
            rows.append((float(sent), float(latency), kind))
            if len(timing) == 3 and all(timing):
                read, queue, app = (float(t) for t in timing)
                timed.append((float(latency), kind, read, queue, app, float(latency) - read - queue - app))
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
        # Where the slowest requests spent their time: unread in the socket
        # (the host's workers busy), waiting at the door (the work queued
        # ahead of them), admitted (their own work, run beside the others
        # admitted) or after their response's head.
        slowest = sorted(timed)[int(0.99 * len(timed)):]
        parts = ("unread (sent to read)", "at the door", "admitted to response head", "after the head")
        print(f"\nthe host's timing (--server-timing), ms:")
        for i, part in enumerate(parts):
            print(line(f"  every request: {part}", [t[2 + i] for t in timed]))
        for i, part in enumerate(parts):
            print(line(f"  the slowest 1% ({len(slowest)}): {part}", [t[2 + i] for t in slowest]))
        kinds = defaultdict(int)
        for t in slowest:
            kinds[t[1]] += 1
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
