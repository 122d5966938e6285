"""
``hbchat-client``: chat from a terminal, or send lines from a script.

On a terminal, a typed line is said to everyone and ``/commands`` do the rest.  With stdin
a pipe or a file, every line is said and the program exits 0 once the server has echoed
every one of them back (so each was delivered), or non-zero when that cannot happen.

A ``tls:`` endpoint is built by :mod:`hbchat.client.tls` (``--ca``, ``--cert``, ``--key``),
so that a certificate that does not verify is reported in one line and ends the client.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.stdio import StandardIO
from twisted.python.failure import Failure

from hbchat import wire
from hbchat.client.backoff import Backoff
from hbchat.client.connector import EndpointConnector, connect
from hbchat.client.console import Console, InputLines
from hbchat.client.factory import ChatClientFactory
from hbchat.client.policy import Diagnose, Diagnosis
from hbchat.client.tls import (
    TLSClient,
    TLSSetupError,
    is_tls_description,
    load_client_certificate,
    load_trust_roots,
    parse_tls_description,
)
from hbchat.config import ConfigError, parse_seconds

#: From a pipe, seconds without a connection after which the client gives up (--give-up-after).
PIPE_GIVE_UP_AFTER = 60.0


def unverified_refusal(endpoint: str) -> str | None:
    """
    Why ``endpoint`` is refused (None: it is not): Twisted's ``ssl:`` client endpoint does
    not check the server's certificate, and nobody asks for that by writing ``ssl:``, the
    natural spelling (the server's listener is one).  The line names the verified spelling.
    """
    kind, _, rest = endpoint.partition(":")
    if kind.strip().lower() != "ssl":
        return None
    return (
        f"ENDPOINT {endpoint!r}: ssl: would not check the server's certificate; "
        f"use tls:{rest} (verified; --ca FILE trusts a private CA)"
    )


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hbchat-client",
        description=(
            "Chat through an hbchat server. On a terminal, type lines to say them; /help lists commands. "
            "With stdin a pipe or file, every line is said, and the exit status is 0 once the server has "
            "echoed each one back (delivered), 1 if that cannot happen."
        ),
        epilog="Examples: hbchat-client tcp:localhost:6464 --nick alice;  "
        "hbchat-client tcp:node1:6464 tcp:node2:6464 --nick alice (a cluster: on losing node1, node2 is tried "
        "first);  "
        "echo hello | hbchat-client tcp:localhost:6464 --nick bot;  "
        "hbchat-client tls:chat.example:6697 --nick alice --ca ca.pem --cert alice.pem --key alice.key.  "
        "TLS: the server's certificate must be valid for HOST and issued by a trusted CA (the system's, or --ca). "
        "A certificate that does not verify (wrong host name, untrusted issuer, expired), or a server that refuses "
        "our client certificate, ends the client at once with one line on stderr and exit status 1: retrying would "
        "fail the same way. A TLS file that cannot be used is reported the same way, before connecting. "
        "A tcp: ENDPOINT that is a TLS port ends the same way, naming the tls: ENDPOINT to use (the client starts "
        "plain TCP with three empty lines, which an hbchat server ignores and a TLS port closes the connection on). "
        "A cluster node that cannot reach its Redis answers ERR 503 cluster unavailable: <VERB> not handled and keeps "
        "the connection: the refused line (SAY, TELL, NICK or RESUME) is kept and sent again after a jittered wait "
        "(0.25 s, doubling up to 5 s), in order, once.",
    )
    parser.add_argument(
        "endpoints",
        metavar="ENDPOINT",
        nargs="+",
        help="Twisted client endpoint string: tcp:HOST:PORT, unix:PATH, or tls:HOST:PORT (verified; "
        "also :timeout=S, :bindAddress=IP, :endpoint=DESCRIPTION to run TLS over another endpoint). "
        "ssl:HOST:PORT is refused (exit status 2): Twisted's ssl: does not verify the server; use tls:. "
        "Several ENDPOINTs are the nodes of one chat (a cluster): the client connects to the first, and "
        "each reconnect (after a failed attempt or a lost connection) tries the next one, wrapping around, "
        "with the same backoff; its session RESUMEs on whichever node it reaches",
    )
    parser.add_argument("--nick", required=True, help="nick to register: 1-32 letters, digits or _-[]{}^|")
    parser.add_argument("--password-file", metavar="FILE", help="file whose first line is the password")
    parser.add_argument(
        "--max-retries",
        metavar="N",
        type=int,
        default=None,
        help="give up after N failed reconnect attempts in a row (default: no limit; from a pipe, "
        "--give-up-after bounds the time instead)",
    )
    parser.add_argument(
        "--give-up-after",
        metavar="SECONDS",
        default=None,
        help="give up (exit status 1) once SECONDS have passed without a connection to the server, counted from "
        "the start or from when the connection was lost: a dead port, a wrong host, a server that is down or "
        f"full. The attempt under way is ended then. 'never' to keep trying (default: {PIPE_GIVE_UP_AFTER:g} "
        "from a pipe, never on a terminal). Every retry line says why the last attempt failed",
    )
    parser.add_argument(
        "--backoff-cap",
        metavar="SECONDS",
        type=float,
        default=30.0,
        help="longest delay between reconnect attempts of the backoff (default 30; a server's "
        "BYE shutdown retry=S hint is followed instead, up to 300)",
    )
    parser.add_argument(
        "--ca",
        metavar="FILE",
        help="tls: only. Trust the CA certificate(s) in this PEM file (a private CA, or a bundle) instead of "
        "the system's trust store",
    )
    parser.add_argument(
        "--cert",
        metavar="FILE",
        help="tls: only. Present the client certificate in this PEM file, for a server that requires one (mutual TLS)",
    )
    parser.add_argument(
        "--key",
        metavar="FILE",
        help="tls: only. The unencrypted PEM private key of --cert (default: the --cert file itself, which "
        "may hold both key and certificate)",
    )
    arguments = parser.parse_args(argv)
    #: The first ENDPOINT (what a single-endpoint caller reads).
    arguments.endpoint = arguments.endpoints[0]
    for endpoint in arguments.endpoints:
        refusal = unverified_refusal(endpoint)
        if refusal is not None:
            _fail(refusal, 2)
    if not wire.is_valid_nick(arguments.nick.encode("utf-8")):
        parser.error(f"--nick {arguments.nick!r}: use 1 to 32 letters, digits or _-[]{{}}^|")
    if arguments.max_retries is not None and arguments.max_retries < 0:
        parser.error("--max-retries must be 0 or more")
    if arguments.give_up_after is not None and arguments.give_up_after != "never":
        try:
            arguments.give_up_after = parse_seconds("give-up-after", arguments.give_up_after)
        except ConfigError:
            parser.error(
                f"--give-up-after must be a positive number of seconds or 'never', not {arguments.give_up_after!r}"
            )
    if not arguments.backoff_cap >= 1:
        parser.error("--backoff-cap must be at least 1 second")
    tls_options = [f"--{name}" for name in ("ca", "cert", "key") if getattr(arguments, name) is not None]
    plain = [endpoint for endpoint in arguments.endpoints if not is_tls_description(endpoint)]
    if tls_options and plain:
        verb = "needs" if len(tls_options) == 1 else "need"
        parser.error(f"{' and '.join(tls_options)} {verb} a tls: ENDPOINT (tls:HOST:PORT), not {plain[0]!r}")
    if arguments.key is not None and arguments.cert is None:
        parser.error("--key needs --cert (the certificate the key belongs to)")
    if arguments.password_file:
        try:
            with open(arguments.password_file, encoding="utf-8") as handle:
                arguments.password = handle.readline().rstrip("\r\n")
        except OSError as error:
            parser.error(f"--password-file: {error.strerror}: {arguments.password_file}")
    else:
        arguments.password = None
    return arguments


def _fail(message: str, status: int) -> NoReturn:
    sys.stderr.write(f"hbchat-client: {message}\n")
    raise SystemExit(status)


def tls_client(arguments: argparse.Namespace, description: str | None = None) -> TLSClient:
    """
    The tls: ENDPOINT (``description``, by default the first) with --ca, --cert and --key
    read; a problem ends the program in one line.
    """
    description = arguments.endpoint if description is None else description
    try:
        address = parse_tls_description(description)
    except ValueError as error:
        _fail(f"ENDPOINT {description!r} is not usable: {error}", 2)
    try:
        roots = load_trust_roots(arguments.ca) if arguments.ca is not None else None
    except TLSSetupError as error:
        _fail(f"--ca: {error}", 1)
    try:
        certificate = load_client_certificate(arguments.cert, arguments.key) if arguments.cert is not None else None
    except TLSSetupError as error:
        _fail(f"--cert/--key: {error}", 1)
    return TLSClient(address, roots, certificate)


def make_endpoint(
    reactor: Any, arguments: argparse.Namespace, description: str | None = None
) -> tuple[IStreamClientEndpoint, Diagnose | None]:
    """
    The endpoint to connect through (``description``, by default the first ENDPOINT), and
    what explains its failures (for tls:).
    """
    description = arguments.endpoint if description is None else description
    if is_tls_description(description):
        tls = tls_client(arguments, description)
        try:
            return tls.endpoint(reactor), tls.diagnose
        except Exception as error:  # a bad endpoint=, a host name IDNA cannot encode, ...
            _fail(f"ENDPOINT {description!r} is not usable: {error or type(error).__name__}", 2)
    endpoint_error = None
    try:
        endpoint = clientFromString(reactor, description)
    except TypeError:
        endpoint_error = "a part is missing (tcp:HOST:PORT, tls:HOST:PORT or unix:PATH)"
    except Exception as error:
        endpoint_error = str(error)
    if endpoint_error is None and description.startswith("unix:") and not getattr(endpoint, "_path", "x"):
        endpoint_error = "a part is missing (unix:PATH)"
    if endpoint_error is not None:
        _fail(f"ENDPOINT {description!r} is not usable: {endpoint_error}", 2)
    return endpoint, None


def make_endpoints(
    reactor: Any, arguments: argparse.Namespace
) -> tuple[list[IStreamClientEndpoint], list[Diagnose | None]]:
    """Every ENDPOINT, in order, and what explains each one's failures."""
    made = [make_endpoint(reactor, arguments, description) for description in arguments.endpoints]
    return [endpoint for endpoint, _ in made], [diagnose for _, diagnose in made]


def give_up_after(arguments: argparse.Namespace, interactive: bool) -> float | None:
    """Seconds without a connection before giving up: --give-up-after, or the default for a pipe; ``None``: never."""
    value: float | str | None = arguments.give_up_after
    if value is None:
        return None if interactive else PIPE_GIVE_UP_AFTER
    return None if value == "never" else float(value)


def run(reactor: Any, arguments: argparse.Namespace) -> Deferred[None]:
    interactive = sys.stdin.isatty()
    endpoints, diagnoses = make_endpoints(reactor, arguments)
    connectors: list[EndpointConnector] = []

    def diagnose(reason: Failure) -> Diagnosis | None:
        """The failure of the endpoint in use, told by that endpoint's TLS (if any)."""
        which = diagnoses[connectors[0].ring.index if connectors else 0]
        return None if which is None else which(reason)

    console = Console(sys.stdout, sys.stderr, reactor, interactive)
    factory = ChatClientFactory(
        arguments.nick,
        console,
        password=arguments.password,
        backoff=Backoff(cap=arguments.backoff_cap),
        max_retries=arguments.max_retries,
        clock=reactor,
        diagnose=diagnose if any(diagnoses) else None,
        give_up_after=give_up_after(arguments, interactive),
    )
    factory.probePlain = True
    console.factory = factory
    StandardIO(InputLines(console), reactor=reactor)
    connectors.append(connect(reactor, endpoints, factory))

    def exit(code: int) -> None:
        if code:
            raise SystemExit(code)

    return console.finished.addCallback(exit)


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    task.react(run, (arguments,))
