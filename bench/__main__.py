"""corral's benchmark: corral against a direct connection to the same Ollama simulator, same run.

    python -m bench                  # the full run, about four minutes
    python -m bench --quick          # about a minute and a half
    python -m bench --scenario a,c   # some scenarios only (a, b, c, d, i)
    python -m bench --smoke          # a few requests each, unpinned: checks the machinery works

What is measured (each scenario starts its own simulator and corral):

(a) Non-streaming ``/api/chat`` requests per second at 64 concurrent keep-alive clients, by
    ``wrk`` with a Lua script for the POST body (the simulator answers at once, so the servers'
    request handling is all there is); target at least x0.45 of direct's, aim x0.6. Without
    ``wrk`` the Python client of ``bench/loadgen.py`` runs instead, and the report says so: it
    costs more per request, so rates are lower.
    In the same rounds and by the same client, variants of corral in front of the same
    simulator (``bench/variants.py``), each compared with the default corral round by round:
    - limits on, in memory (a request limit and a token budget per client address, far above
      what the load reaches): target at least x0.90 of the req/s with limits off;
    - the same limits in Redis (at ``BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/0``):
      no target, the ratio and corral's CPU time per request report the cost. Without a Redis
      that answers, the row says "not measured"; ``--smoke`` leaves it out;
    - recording on (the default) against recording off (no access log line, usage record or
      request metric): target at least x0.90, i.e. they cost at most 10% of throughput;
    - in the full run, a second default corral: how far two processes of the same code differ.
    Limits in memory and recording off are the default corral's own process, switched by a
    signal for their measurement (``bench/run_corral.py``); the Redis variant and the second
    corral are processes of their own. Such a row names its baseline corral, whose figure
    stands in the direct column.
(b) 500 concurrent streams of 100 tokens each (``stream: true``, ``options.num_predict``),
    started evenly over one second at 20 tokens/s per stream: what corral adds to the time to
    first token and to the gaps between chunks (p50 and p99, corral minus direct; targets for
    the time to first token: p50 under 0.5 ms, p99 under 1.5 ms), and corral's CPU use, in % of
    one core, over the window in which all 500 stream at once (nginx: 22%; target: under 35%).
(c) Streamed chunks per second through one corral process: many streams from a simulator that
    emits tokens as fast as it can, so corral is the bottleneck; NDJSON lines received per second
    through corral against direct, and corral's CPU time per chunk (target: at most 6.67 us,
    that is 150,000 chunks a second on one core).
(d) corral's resident memory (RSS) with 500 streams held open by a slow token rate; target
    under 60 MB.

In (a), (b) and (c), nginx runs in the same rounds when it is installed (``apt-get install
nginx-light``; ``BENCH_NGINX`` names another binary): one worker on corral's core, in front of the
same simulator (``bench/reference.py``). Its rows, marked "nginx (reference)", hold nginx's figure
in the corral column and have no target: they show what a proxy written in C reaches on this
machine in this run, which puts a missed target in proportion. Without nginx they say "not
measured"; ``--no-reference`` leaves them out, and a smoke run measures them only with
``--reference``.

How: corral (``bench/run_corral.py``) runs pinned to core 0, alone (in (a), with its variants,
each idle while another is measured). The simulator
(``bench/run_simulator.py``: what ``corral simulate`` runs, without Python's cyclic collector,
whose pauses would be noise), the load generator (``wrk``, or ``python -m bench.loadgen``, a
uvloop + httptools client built to cost little per chunk) and this process share core 1. Every
process is separate; readiness is polled over HTTP, never slept for. corral's access log is on,
written to ``/dev/null``, so its cost is part of what is measured. The machine is noisy, so the
benchmark reports ratios and differences rather than absolute numbers: each scenario runs direct,
corral, direct, corral... (then (a)'s other corrals, each round) and reports medians; a ratio or a
difference is the median of the per-round pairs.

The table goes to standard output, progress to standard error, and everything (every round's raw
figures too) to ``bench/results/latest.json``. The exit status is 1 when something went wrong
under load (an answer outside 2xx, a broken stream, a process that died), else 0; a missed target
shows as FAIL in the table but does not change the exit status, and neither does a Redis that is
not there.

(i) The costs of limits and recording again, as instructions per request: corral under valgrind's
    callgrind, switched between its modes in one process (``bench/instructions.py``, also
    ``python -m bench.instructions``). Unlike requests per second, the machine's noise does not
    move them. Without valgrind, its rows say "not measured"; a smoke run leaves it out.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.procs import REPO_ROOT, Pinning, pin_self
from bench.profiles import FULL, QUICK, SMOKE, Profile
from bench.report import Report, render_markdown, write_json
from bench.rounds import Bench
from bench.scenarios import SCENARIOS, TITLES, run_scenario
from bench.wrk import wrk_path

DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "latest.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="corral against a direct connection to the same Ollama simulator.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a shorter run (under a minute)")
    size.add_argument(
        "--smoke", action="store_true", help="a tiny unpinned run that checks the machinery"
    )
    parser.add_argument(
        "--scenario",
        help=f"comma-separated, from: {','.join(SCENARIOS)} (default: all; a smoke run leaves"
        " out i)",
    )
    parser.add_argument("--rounds", type=int, help="rounds of direct, corral... per scenario")
    reference = parser.add_mutually_exclusive_group()
    reference.add_argument(
        "--reference", action="store_true", help="measure nginx in (a), (b) and (c) (smoke too)"
    )
    reference.add_argument(
        "--no-reference", action="store_true", help="do not measure nginx beside corral"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--no-wrk", action="store_true", help="use the Python client for (a) even if wrk exists"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON results")
    args = parser.parse_args(argv)
    if args.scenario is None:
        keys = [key for key in SCENARIOS if key != "i" or not args.smoke]
    else:
        keys = [key.strip().lower() for key in args.scenario.split(",") if key.strip()]
    unknown = [key for key in keys if key not in SCENARIOS]
    if unknown or not keys:
        parser.error(f"--scenario takes some of {','.join(SCENARIOS)}; got {args.scenario!r}")
    args.scenarios = list(dict.fromkeys(keys))
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def choose_profile(args: argparse.Namespace) -> Profile:
    profile = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.rounds is not None:
        profile = dataclasses.replace(profile, rounds=args.rounds)
    if args.reference or args.no_reference:
        profile = dataclasses.replace(profile, reference=args.reference)
    return profile


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    profile = choose_profile(args)
    pinning = Pinning.choose(requested=profile.pin and not args.no_pin)
    pin_self(pinning.load)
    use_wrk = not args.no_wrk and wrk_path() is not None
    if use_wrk:
        load_client = "wrk, one thread"
    else:
        reason = "as asked (--no-wrk)" if args.no_wrk else "wrk is not installed"
        load_client = (
            f"the Python client (bench.loadgen loop), {reason}; it costs more per request than"
            " wrk, so (a)'s rates are lower than wrk would show"
        )
    bench = Bench(profile, pinning, use_wrk)
    started = datetime.now(UTC)
    clock = time.monotonic()
    results = []
    for key in args.scenarios:
        print(f"bench: ({key}) {TITLES[key]}...", file=sys.stderr, flush=True)
        results.append(run_scenario(key, bench))
    report = Report(
        profile=profile.name,
        started=started.isoformat(timespec="seconds"),
        seconds=time.monotonic() - clock,
        pinning=pinning.note,
        load_client=load_client,
        scenarios=results,
    )
    print(render_markdown(report), flush=True)
    write_json(report, args.output)
    print(f"bench: results written to {args.output}", file=sys.stderr)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
