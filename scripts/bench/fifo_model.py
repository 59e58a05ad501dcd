#!/usr/bin/env python3
"""A model of the shop mix's closed loop, to see what sets its p99.

    python3 scripts/bench/fifo_model.py                  # the defaults below
    python3 scripts/bench/fifo_model.py --clients 16 --limit 4

N customers each send a request the moment their last one is answered.
Requests are admitted first come first served, at most `limit` at once
(bazaar's --max-concurrent-requests), and the admitted ones share `cores`
cores equally. A request of a kind needs that kind's CPU time (core-ms),
give or take 30%. The defaults are estimates, set by hand so that the
model's throughput matches a measured run: the embedded shop at 64
customers with 4 admitted on a 2-core Intel Xeon (2026-12-06), 2,934
req/s, mean 21.8 ms, p99 38.8 ms, where bazaar's threads had 1.65 cores
(the load generator and the kernel the rest). In them a read (a cache
hit) costs a third of an add to cart and a tenth of a checkout with its
notifications, in line with what the parts cost alone in earlier
profiles (scripts/bench/where-we-stand.md).

It prints, for the costs as given and scaled down, the throughput, the
mean and the p99: with N requests always in the shop, the mean is N over
the throughput (Little's law), and a read waits for the work queued ahead
of it, so the p99 is the mean plus the spread of that work. Other
policies (shortest first, a lane for reads) are there to compare: they
lower the reads' latency and raise the checkouts' far more.
"""
import argparse
import random

KINDS = ("read", "add", "checkout")


def simulate(clients, cores, limit, costs, shares, seconds, policy="fifo", seed=1):
    rnd = random.Random(seed)
    draw = [k for k, share in zip(range(len(KINDS)), shares) for _ in range(share)]

    def request(now):
        kind = rnd.choice(draw)
        return [now, kind, costs[kind] * rnd.uniform(0.7, 1.3)]

    def admit(waiting, running):
        if policy == "fifo":
            while len(running) < limit and waiting:
                running.append(waiting.pop(0))
        elif policy == "shortest-first":
            while len(running) < limit and waiting:
                best = min(range(len(waiting)), key=lambda i: (waiting[i][1], waiting[i][0]))
                running.append(waiting.pop(best))
        elif policy == "read-lane":
            # Half the slots for reads, half for the rest, each lane in order.
            for lane_is_read in (True, False):
                cap = max(1, limit // 2)
                busy = sum(1 for r in running if (r[1] == 0) == lane_is_read)
                i = 0
                while busy < cap and i < len(waiting):
                    if (waiting[i][1] == 0) == lane_is_read:
                        running.append(waiting.pop(i))
                        busy += 1
                    else:
                        i += 1

    now, warmup = 0.0, 5.0
    waiting = [request(0.0) for _ in range(clients)]
    running, done = [], []
    admit(waiting, running)
    while now < seconds + warmup:
        rate = min(1.0, cores / len(running))
        step = min(r[2] for r in running) / rate
        now += step
        for r in running:
            r[2] -= step * rate
        for r in [r for r in running if r[2] <= 1e-12]:
            running.remove(r)
            if now > warmup:
                done.append((now - r[0], r[1]))
            waiting.append(request(now))
        admit(waiting, running)
    return done, seconds


def report(label, done, seconds):
    latencies = sorted(l for l, _ in done)
    q = lambda values, p: values[min(len(values) - 1, int(p * len(values)))] * 1e3
    text = (f"{label:28} {len(done) / seconds:6.0f} req/s  mean {sum(latencies) / len(latencies) * 1e3:5.1f}"
            f"  p50 {q(latencies, 0.5):5.1f}  p99 {q(latencies, 0.99):5.1f} ms |")
    for kind, name in enumerate(KINDS):
        mine = sorted(l for l, k in done if k == kind)
        text += f" {name} p99 {q(mine, 0.99):6.1f}"
    print(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--cores", type=float, default=1.65)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--costs", default="0.337,1.0,3.4", help="core-ms of a read, an add to cart, a checkout")
    parser.add_argument("--shares", default="84,11,5", help="percent of reads, adds to cart, checkouts")
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    costs = [float(c) / 1e3 for c in args.costs.split(",")]
    shares = [int(s) for s in args.shares.split(",")]
    print(f"{args.clients} customers, {args.cores} cores, {args.limit} admitted at once")
    for scale in (1.0, 0.9, 0.8, 0.7):
        done, seconds = simulate(args.clients, args.cores, args.limit, [c * scale for c in costs], shares, args.seconds)
        report(f"fifo, costs x{scale}", done, seconds)
    halved = costs[:2] + [costs[2] / 2]
    report("fifo, checkouts halved", *simulate(args.clients, args.cores, args.limit, halved, shares, args.seconds))
    for policy in ("shortest-first", "read-lane"):
        report(policy, *simulate(args.clients, args.cores, args.limit, costs, shares, args.seconds, policy))


if __name__ == "__main__":
    main()
