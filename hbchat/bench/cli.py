"""
``hbchat-bench``: the command line of the load tool.

    hbchat-bench idle ENDPOINT --clients N [--period S] [--duration D] [--ramp R] ...
    hbchat-bench fanout ENDPOINT --receivers R --senders S (--rate M | --flat) [--size B] ...
    hbchat-bench storm [--server-cmd 'CMD with {port}'] [--clients N] [--smoke] ...

Exit status: 0 the run completed (read the numbers for drops and loss; storm: every client
came back), 1 it could not run or finish (nothing connected, a worker failed; storm: not all
came back), 2 a usage error (a non-loopback endpoint included), 3 ``--max-time`` was reached,
4 the server rate-limited the run (``ERR 429`` or ``BYE kicked``; not with ``--allow-rate-limit``).
"""

from __future__ import annotations

import argparse
import resource
import secrets
import sys
import textwrap
from typing import Any, NoReturn

from hbchat.bench.settings import (
    MAX_TEXT_SIZE,
    RunSettings,
    UsageError,
    default_workers,
    effective_workers,
    loopback_endpoint,
    validate,
)
from hbchat.bench.stats import MIN_TEXT_SIZE, split

DESCRIPTION = """\
A load tool for your own test server: it opens many connections to an hbchat server over
loopback and measures heartbeat round trips (idle), message delivery latency and loss
(fanout), or the reconnection timeline around a server restart (storm).

It only connects to 127.0.0.0/8, ::1 or a unix: socket (a host name must resolve to those
only): pointed at somebody else's server, a load tool is a denial-of-service tool. Every run
is bounded in time (--max-time)."""

ENDPOINT_HELP = "the server: tcp:HOST:PORT (loopback only, e.g. tcp:127.0.0.1:6464) or unix:PATH"
EPILOG = """\
exit status: 0 completed (read the summary for drops and loss), 1 could not run or finish,
2 usage error (e.g. a non-loopback endpoint), 3 --max-time reached, 4 the server rate-limited
the run: it answered ERR 429 or kicked a connection (BYE kicked), unless --allow-rate-limit."""

#: Exit status of a run the server rate-limited (ERR 429, BYE kicked).
RATE_LIMITED_EXIT = 4


def about(text: str) -> str:
    return DESCRIPTION + "\n\n" + textwrap.fill(text, 92)


class Parser(argparse.ArgumentParser):
    """argparse, with every error on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", metavar="ENDPOINT", help=ENDPOINT_HELP)
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="worker processes, each with its own reactor and share of the connections "
        "(default: min(4, CPUs) = %(default)s)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measurement window, seconds (default 10)")
    parser.add_argument("--ramp", type=float, default=2000.0, help="connections opened per second (default 2000)")
    parser.add_argument(
        "--ramp-concurrency", type=int, default=256, help="registrations in progress at once, at most (default 256)"
    )
    parser.add_argument(
        "--settle", type=float, default=1.0, help="quiet seconds (no JOIN/LEFT) before the window (default 1)"
    )
    parser.add_argument(
        "--settle-max", type=float, default=60.0, help="stop waiting for that quiet after this (default 60)"
    )
    parser.add_argument("--json", metavar="FILE", help="write every result to this JSON file")
    parser.add_argument("--plot", metavar="FILE", help="write a PNG: latency histogram and timeline (needs matplotlib)")
    parser.add_argument(
        "--max-time", type=float, default=300.0, help="hard cap on the whole run, seconds (default 300)"
    )
    parser.add_argument("--nick-prefix", default="bench", help="nicks are PREFIX-<run>-<worker>-<n> (default bench)")
    parser.add_argument("--server-pid", type=int, help="also sample this server process's CPU and memory (Linux)")
    parser.add_argument(
        "--allow-rate-limit",
        action="store_true",
        help="lines answered ERR 429 and connections kicked (BYE kicked) by the server's rate limit are counted in "
        "the summary either way; without this option they fail the run (exit status 4), since its numbers then "
        "measure the limit, not the server",
    )


def build_parser() -> Parser:
    parser = Parser(
        prog="hbchat-bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO", parser_class=Parser)

    idle = commands.add_parser(
        "idle",
        help="N heartbeating connections: PONG round trips, missing PONGs, drops",
        description=about(
            "idle: N connections register, answer the server's PINGs and send their own PING every --period "
            "(spread evenly over the period), timing each PONG. The window opens once no JOIN or LEFT has arrived "
            "for --settle seconds."
        ),
        epilog=EPILOG + "\n\nexample: hbchat-bench idle tcp:127.0.0.1:6464 --clients 2000 --period 1 --duration 20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(idle)
    idle.add_argument("--clients", type=int, required=True, help="connections to open")
    idle.add_argument("--period", type=float, default=1.0, help="seconds between a connection's PINGs (default 1)")
    idle.add_argument("--grace", type=float, default=2.0, help="seconds to wait for late PONGs (default 2)")

    fanout = commands.add_parser(
        "fanout",
        help="senders and receivers: delivery rate, latency percentiles, loss",
        description=about(
            "fanout: senders SAY timestamped texts, every receiver times every MSG from its send time (one clock: "
            "one machine). Messages sent during the window count; the run waits (--drain) for those still in "
            "flight, then reports loss."
        ),
        epilog=EPILOG + "\n\nexample: hbchat-bench fanout tcp:127.0.0.1:6464 --receivers 100 --senders 4 --rate 1000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(fanout)
    fanout.add_argument("--receivers", type=int, default=100, help="receiving connections (default 100)")
    fanout.add_argument("--senders", type=int, default=4, help="sending connections (default 4)")
    pace = fanout.add_mutually_exclusive_group(required=True)
    pace.add_argument("--rate", type=float, help="messages per second, all senders together")
    pace.add_argument("--flat", action="store_true", help="send as fast as the server takes them")
    fanout.add_argument(
        "--size",
        type=int,
        default=64,
        help=f"bytes of text per message, {MIN_TEXT_SIZE} to {MAX_TEXT_SIZE} (default 64)",
    )
    fanout.add_argument("--warmup", type=float, default=1.0, help="seconds of sending before the window (default 1)")
    fanout.add_argument(
        "--drain", type=float, default=10.0, help="seconds to wait for messages in flight, at most (default 10)"
    )

    storm = commands.add_parser(
        "storm",
        help="N clients, a server restart, and the reconnection timeline",
        description=about(
            "storm: starts the server itself on a free loopback port, connects N hbchat clients (the real client, "
            "all in one process), stops the server (SIGKILL or SIGTERM), starts it again and records every "
            "reconnection attempt per 100 ms until all are back."
        ),
        epilog=EPILOG.replace("1 could not run or finish", "1 not every client came back")
        + "\n\nexample: hbchat-bench storm --clients 500 --scenarios hbchat-crash hbchat-graceful --plot storm.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from hbchat.bench.stormoptions import add_storm_options

    storm.add_argument(
        "--server-cmd",
        metavar="CMD",
        help="the server to start, with {port} where its loopback port goes (and optionally {retry_hint}); "
        "it must listen on 127.0.0.1:{port} and is signalled by its PID, so exec the server, no shell wrapper "
        "(default: twistd -n hbchat --listen tcp:{port}:interface=127.0.0.1 --ping 5 --timeout 15 ...)",
    )
    storm.add_argument("--clients", type=int, help="clients to connect (default 2000; 50 with --smoke)")
    storm.add_argument("--smoke", action="store_true", help="50 clients, short hint; exit 1 unless all come back")
    add_storm_options(storm, backlog_help="listen backlog of the default server (default: hbchat's, 1024)")
    storm.add_argument("--json", metavar="FILE", help="write every result to this JSON file")
    storm.add_argument("--plot", metavar="FILE", help="write a PNG of the attempts per 100 ms (needs matplotlib)")
    storm.add_argument("--max-time", type=float, default=300.0, help="hard cap on the whole run, s (default 300)")
    storm.set_defaults(subparser=storm)
    return parser


def settings_from(args: argparse.Namespace, run_tag: str) -> RunSettings:
    settings = RunSettings(
        scenario=args.scenario,
        endpoint=loopback_endpoint(args.endpoint),
        workers=args.workers,
        duration=args.duration,
        ramp=args.ramp,
        ramp_concurrency=args.ramp_concurrency,
        settle=args.settle,
        settle_max=args.settle_max,
        max_time=args.max_time,
        nick_prefix=args.nick_prefix,
        run_tag=run_tag,
        json_path=args.json,
        plot_path=args.plot,
        server_pid=args.server_pid,
        allow_rate_limit=args.allow_rate_limit,
    )
    if args.scenario == "idle":
        settings.clients = args.clients
        settings.period = args.period
        settings.grace = args.grace
    else:
        settings.receivers = args.receivers
        settings.senders = args.senders
        settings.rate = None if args.flat else args.rate
        settings.size = args.size
        settings.warmup = args.warmup
        settings.drain = args.drain
    validate(settings)
    return settings


def check_fd_limit(connections: int, workers: int) -> None:
    """Refuse a run that cannot open its connections (a worker raises its soft limit to the hard one)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return
    largest = max(split(connections, workers))
    if largest + 64 > hard:
        raise UsageError(
            f"{largest} connections per worker need more file descriptors than the limit ({hard}): "
            "use more --workers or raise the hard limit (ulimit -Hn)"
        )


def need_matplotlib(plot: str | None) -> None:
    from hbchat.bench.report import PLOT_NEEDS, have_matplotlib

    if plot is not None and not have_matplotlib():
        raise UsageError(PLOT_NEEDS)


def exit_status(data: dict[str, Any], settings: RunSettings) -> int:
    """The exit status of a finished idle or fanout run (see the module's docstring)."""
    from hbchat.bench.report import failed_by_rate_limit

    if data["interrupted"]:
        return 130
    if data["timed_out"]:
        return 3
    if data["errors"] or data["connections"]["registered"] == 0:
        return 1
    if failed_by_rate_limit(data, settings):
        return RATE_LIMITED_EXIT
    return 0


def run_load(args: argparse.Namespace, argv: list[str]) -> int:
    from hbchat.bench.progress import Progress
    from hbchat.bench.report import document, plot, summary_line, write_json
    from hbchat.bench.runner import Run

    settings = settings_from(args, secrets.token_hex(2))
    need_matplotlib(settings.plot_path)
    workers = effective_workers(settings.workers, settings.connections)
    check_fd_limit(settings.connections, workers)
    progress = Progress(sys.stderr)
    run = Run(settings, progress)
    data = run.execute(workers)
    summary = summary_line(data, settings)
    doc = document(data, settings, argv, summary)
    if settings.json_path:
        write_json(settings.json_path, doc)
        progress.message(f"hbchat-bench: wrote {settings.json_path}")
    if settings.plot_path:
        plot(doc, settings.plot_path)
        progress.message(f"hbchat-bench: wrote {settings.plot_path}")
    print(summary, flush=True)
    return exit_status(data, settings)


def run_storm(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> int:
    from hbchat.bench import stormoptions, stormrun

    stormoptions.apply_defaults(args, parser)
    if args.server_cmd is not None:
        if "{port}" not in args.server_cmd:
            raise UsageError("--server-cmd must contain {port}, where the server's loopback port goes")
        if args.backlog is not None:
            raise UsageError("--backlog applies to the default server only; put it in your --server-cmd")
    if not 0 < args.max_time <= 86400:
        raise UsageError("--max-time must be positive (at most a day)")
    need_matplotlib(args.plot)
    return stormrun.bench_main(args, argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"hbchat-bench {args.scenario}"
    try:
        if args.scenario == "storm":
            return run_storm(args, args.subparser, argv)
        return run_load(args, argv)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
