"""
The chat's Prometheus metrics, computed when they are scraped.

:class:`ChatCollector` is a ``prometheus_client`` collector: each scrape it reads the plain
counters of :mod:`hbchat.stats`, the connections, the sessions and the reactor lag, and
yields metric families; ``prometheus_client`` does the exposition.  Nothing is counted
through ``prometheus_client`` on the server's hot paths (its metrics take a lock per
update).  A scrape walks the open connections and sessions once: a few milliseconds at
10,000 connections.

Every server gets its own :class:`~prometheus_client.CollectorRegistry`
(:func:`chat_registry`), never the global one, so that servers in one process (tests) do
not collide.  It also holds prometheus_client's process, platform and GC collectors
(``process_*``, ``python_*``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from hbchat.ops.hangup import RELOAD_OUTCOMES
from hbchat.ops.histogram import Histogram
from hbchat.ops.observed import ObservedChatFactory as ChatFactory
from hbchat.ops.stats import CLOSE_REASONS, RESUME_OUTCOMES
from hbchat.server.tls import ALPN_PROTOCOLS, NO_ALPN, ServerTLS


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    buckets = [(floatToGoString(bound), float(count)) for bound, count in histogram.cumulative()]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=histogram.sum, unit="seconds")


def _counter(name: str, documentation: str, value: float, unit: str = "") -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value, unit=unit)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class ChatCollector(Collector):
    """The ``hbchat_*`` metrics of one chat."""

    def __init__(self, factory: ChatFactory) -> None:
        self.factory = factory
        self.lag = factory.lag

    def describe(self) -> Iterable[Metric]:
        # Registering must not run collect(): nothing is listening yet.
        return []

    def collect(self) -> Iterator[Metric]:
        factory = self.factory
        stats = factory.stats
        connections = list(factory.connections)
        listeners = factory.listeners

        open_by_listener = Counter(protocol.listener for protocol in connections)
        opened = GaugeMetricFamily("hbchat_connections_open", "Connections open now, by listener.", labels=["listener"])
        for listener in listeners:
            opened.add_metric([listener.description], open_by_listener.pop(listener.description, 0))
        for description, count in sorted(open_by_listener.items()):
            opened.add_metric([description], count)
        yield opened

        accepted = CounterMetricFamily(
            "hbchat_connections_accepted",
            "Connections accepted, by listener (those then refused with ERR 503 included).",
            labels=["listener"],
        )
        listening = GaugeMetricFamily(
            "hbchat_listening", "1 while the listener is listening, else 0.", labels=["listener"]
        )
        for listener in listeners:
            accepted.add_metric([listener.description], listener.accepted)
            listening.add_metric([listener.description], 1 if listener.listening else 0)
        yield accepted
        yield listening

        yield _gauge(
            "hbchat_max_clients", "Most connections served at once (--max-clients).", factory.config.max_clients
        )
        yield _gauge("hbchat_users_registered", "Registered users with a connection now.", len(factory.chat.fanout))
        yield _gauge(
            "hbchat_sessions_in_grace",
            "Sessions whose connection dropped, resumable for --grace seconds.",
            sum(1 for session in factory.chat.sessions if session.connection is None),
        )
        evicted = CounterMetricFamily(
            "hbchat_sessions_grace_evicted",
            "Sessions in grace ended early because a bound was reached: max_grace (--max-grace, in all) or "
            "max_grace_per_ip (--max-grace-per-ip, one address); the oldest goes first.",
            labels=["bound"],
        )
        for bound in ("max_grace", "max_grace_per_ip"):
            evicted.add_metric([bound], factory.chat.sessions.evicted[bound])
        yield evicted
        yield _gauge("hbchat_stopping", "1 once the server is shutting down, else 0.", 1 if factory.stopping else 0)

        totals = stats.totals(connections)
        yield _counter("hbchat_pings_sent", "PINGs the server sent.", totals.pingsSent)
        yield _counter(
            "hbchat_pongs_received", "PONG lines received (answers to our PINGs or not).", totals.pongsReceived
        )
        yield _histogram(
            "hbchat_ping_rtt_seconds", "Round-trip time of the server's PINGs, until their PONG.", stats.rtt
        )
        yield _counter("hbchat_received_bytes", "Bytes received from clients.", totals.bytesIn, unit="bytes")
        yield _counter(
            "hbchat_sent_bytes", "Bytes handed to the transports for clients.", totals.bytesOut, unit="bytes"
        )

        closes = stats.closes
        yield _counter("hbchat_idle_timeouts", "Connections cut after --timeout seconds of silence.", closes["timeout"])
        yield _counter(
            "hbchat_timeouts_spared",
            "Idle-timeout verdicts withdrawn: the peer's data was waiting behind a server stall.",
            factory.sparedVerdicts,
        )
        yield _counter(
            "hbchat_timeouts_asked",
            "Idle-timeout verdicts put off to PING first: no PING had gone out in time (a server stall).",
            factory.askedVerdicts,
        )
        yield _counter(
            "hbchat_slow_consumer_cuts",
            "Connections cut because they did not keep up with their output.",
            closes["slow"],
        )
        yield _gauge(
            "hbchat_connections_stalled",
            "Congested connections that took none of their output since the last look (a zero window: not reading).",
            factory.backpressure.stalled,
        )
        yield GaugeMetricFamily(
            "hbchat_unsent_bytes",
            "Output written for clients and not yet acknowledged: the server's buffers plus the kernel's send queues.",
            value=sum(protocol.unsent() or 0 for protocol in connections),
            unit="bytes",
        )
        yield _counter(
            "hbchat_auth_failures",
            "Failed logins answered ERR 401 (--auth, --tls-identity); the third on a connection closes it.",
            stats.authFailures,
        )
        checker = factory.checker
        yield _gauge(
            "hbchat_auth_checks_running",
            "Password checks running now (at most --auth-checks).",
            checker.running if checker is not None else 0,
        )
        yield _gauge(
            "hbchat_auth_checks_waiting",
            "Password checks waiting for a free --auth-checks slot (at most --auth-queue).",
            checker.waiting if checker is not None else 0,
        )
        refused = CounterMetricFamily(
            "hbchat_auth_refused",
            "Logins refused without a password check, by reason: busy (--auth-checks running and --auth-queue "
            "waiting already), backoff (the address used up --auth-failures); each closes its connection.",
            labels=["reason"],
        )
        refused.add_metric(["busy"], checker.refused if checker is not None else 0)
        refused.add_metric(["backoff"], factory.loginFailures.refused)
        yield refused
        yield _gauge(
            "hbchat_auth_addresses_backing_off",
            "Addresses that used up --auth-failures and must wait before trying a password again.",
            factory.loginFailures.blocked(),
        )
        yield _counter(
            "hbchat_rate_limit_rejections",
            "Lines refused with ERR 429: over --rate/--burst, or PINGs too often.",
            stats.rateLimited,
        )
        yield _gauge(
            "hbchat_connections_registering",
            "Connections accepted and not yet registered (TLS handshake, NICK, password check).",
            factory.handshaking,
        )
        yield _counter(
            "hbchat_accept_pauses",
            "Times accepting paused because --max-handshakes connections were registering.",
            stats.acceptPauses,
        )
        closed = CounterMetricFamily(
            "hbchat_connections_closed",
            "Connections closed, by reason: quit, timeout, slow, error (reset, EOF without QUIT), replaced (resumed "
            "elsewhere), shutdown, register_timeout, line_too_long, full (refused with ERR 503), unauthorized (a third "
            "failed login with --auth or --tls-identity), kicked (over the rate limit after repeated ERR 429), "
            "tls_error (mostly a failed TLS handshake: no or an untrusted client certificate, no common protocol or "
            "cipher, plain text, or a TLS connection closed before its handshake was done), auth_busy and "
            "auth_backoff (a NICK refused without a password check: --auth-checks and --auth-queue full, or its "
            "address used up --auth-failures), evicted (closed unregistered to admit a newcomer while "
            "--max-handshakes was full).",
            labels=["reason"],
        )
        for reason in (*CLOSE_REASONS, *sorted(set(closes) - set(CLOSE_REASONS))):
            closed.add_metric([reason], closes[reason])
        yield closed

        alpn = CounterMetricFamily(
            "hbchat_tls_alpn",
            "TLS handshakes whose client offered ALPN, by ssl: listener and the protocol chosen (none: nothing in "
            "common, served without ALPN).",
            labels=["listener", "protocol"],
        )
        for listener in listeners:
            tls = getattr(listener, "tls", None)
            if isinstance(tls, ServerTLS):
                names = [name.decode("ascii") for name in ALPN_PROTOCOLS] + [NO_ALPN]
                for name in [*names, *sorted(set(tls.alpn) - set(names))]:
                    alpn.add_metric([listener.description, name], tls.alpn[name])
        yield alpn

        yield _counter("hbchat_events_broadcast", "Chat events (MSG, JOIN, LEFT) broadcast.", factory.chat.seq)
        yield _counter(
            "hbchat_deliveries",
            "Broadcast events handed to connections (one event to one user).",
            factory.chat.fanout.deliveries,
        )
        resumes = CounterMetricFamily(
            "hbchat_resumes",
            "RESUMEs, by outcome: complete, partial (history too short), unknown (ERR 404).",
            labels=["outcome"],
        )
        for outcome in RESUME_OUTCOMES:
            resumes.add_metric([outcome], stats.resumes[outcome])
        yield resumes
        reloads = CounterMetricFamily(
            "hbchat_reloads",
            "SIGHUPs (systemctl reload), by outcome: reloaded (every ssl: listener's files), failed (a listener kept "
            "its previous certificate), nothing (no ssl: listener, or the server had stopped).",
            labels=["outcome"],
        )
        for outcome in RELOAD_OUTCOMES:
            reloads.add_metric([outcome], stats.reloads[outcome])
        yield reloads

        lag = self.lag
        yield _histogram(
            "hbchat_reactor_lag_seconds",
            f"How late a timer set every {lag.interval:g}s fires: the reactor's lag.",
            lag.histogram,
        )
        yield GaugeMetricFamily(
            "hbchat_reactor_lag_recent_max_seconds",
            f"The largest reactor lag of the last {lag.window:g}s.",
            value=lag.recent_max(),
            unit="seconds",
        )


def chat_registry(factory: ChatFactory) -> CollectorRegistry:
    """A registry of its own for ``factory``'s metrics, with the process and Python ones."""
    registry = CollectorRegistry()
    registry.register(ChatCollector(factory))
    # A chat kept elsewhere (--redis: hbchat.cluster) brings metrics of its own.
    extra = getattr(factory.chat, "collector", None)
    if extra is not None:
        registry.register(extra)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
