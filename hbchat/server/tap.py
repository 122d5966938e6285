"""
``twistd hbchat``: command-line options and the service they describe.

No reactor is imported at module level: twistd chooses and installs the reactor after it
has loaded plugins, and tests pass their own.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import IService
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.strcred import AuthOptionMixin
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

import twisted
from hbchat import __version__
from hbchat.auth.authoption import AUTH_HELP, AuthError, make_checker
from hbchat.cluster import options as cluster_options
from hbchat.config import ConfigError, ServerConfig
from hbchat.ops.observed import ObservedChatFactory
from hbchat.ops.web import WithMetrics
from hbchat.server.optiontable import DEFAULTS, FLAGS, PARAMETERS
from hbchat.server.reuseport import check_reuse_port
from hbchat.server.service import ChatService
from hbchat.server.statekeeper import keep_state
from hbchat.server.tls import identity_refusal, is_ssl, load_certificates, load_options, parse_ssl
from hbchat.web.origins import OriginError, parse_origin


class ServerOptions(AuthOptionMixin, usage.Options):
    """Options of ``twistd hbchat``; a bad value raises ``usage.UsageError``."""

    # --auth CHECKER (twisted.cred.strcred): NICK <nick> <password> is checked as a username and password.
    supportedInterfaces = (IUsernamePassword,)

    synopsis = "[options]"
    longdesc = (
        "A chat server speaking the hbchat v1 line protocol, with heartbeats that tell a live "
        "peer from a dead one. Endpoints are Twisted endpoint strings, e.g. tcp:6464, "
        "tcp:6464:interface=127.0.0.1, ssl:6697:privateKey=key.pem:certKey=cert.pem, "
        "unix:/run/hbchat.sock. ssl: listeners serve TLS 1.2 and later with strong ciphers only; SIGHUP "
        "(kill -HUP $(cat twistd.pid)) reloads their key and certificate files; without one it logs that there is "
        "nothing to reload (SIGHUP never stops the server). With --auth (e.g. --auth "
        "hbpasswd:/etc/hbchat/passwd, see --help-auth) NICK must carry a password the checker accepts. "
        "The protocol is described in docs/protocol.md; TLS setup in docs/security.md."
    )

    optFlags = FLAGS
    optParameters = [*PARAMETERS, *cluster_options.PARAMETERS]

    def opt_state(self, path: str) -> None:
        """File the chat is kept in across a graceful restart: at SIGTERM, once the drain is over, its seq, history
        and sessions (tokens, nicks, grace left) are written to it atomically (mode 0600: it holds session tokens), and
        at start they are read back (and the file removed once the server serves), so clients RESUME with nothing
        lost. A missing file is a fresh chat; a damaged, foreign or unreadable one is logged and a fresh chat; a failure
        to write it is logged
        [default: off]"""
        if not path or path.endswith(os.sep):
            raise usage.UsageError(f"--state {path!r} is not a file name")
        # As of now: twistd may change directory (--rundir) between reading it and writing it.
        self["state"] = os.path.abspath(path)

    def __init__(self) -> None:
        super().__init__()
        self["state"] = None
        self["listen"] = []
        self["metrics"] = None
        self["tls-client-ca"] = None
        self["web"] = []
        self["web-origin"] = []

    def opt_listen(self, description: str) -> None:
        """Twisted server endpoint string to serve on; repeat it to serve one chat on several. tcp:, ssl: and unix:
        endpoints listen with backlog=1024 unless they name a backlog. The default listens on every interface, with no
        password unless --auth is given; tcp:6464:interface=127.0.0.1 keeps it to this machine [default: tcp:6464]"""
        # ssl: descriptions are hbchat's own (hbchat.tls), checked with their files once all
        # options are in (postOptions): Twisted's parser would load the files too, more strictly.
        if not is_ssl(description):
            try:
                serverFromString(None, description)
            except Exception as error:
                raise usage.UsageError(f"--listen {description!r} is not a usable endpoint: {error}") from None
        self["listen"].append(description)

    def opt_web(self, description: str) -> None:
        """Twisted server endpoint string to serve the chat in the browser on, over HTTP (twisted.web): GET / is the
        chat page (its files ship with hbchat: no CDN, works offline) and GET /ws a WebSocket, subprotocol hbchat.v1,
        one protocol line per text frame, in the same chat as --listen, with the same limits; repeat it for several.
        ssl: endpoints serve HTTPS and WSS with the TLS of --listen ssl: (SIGHUP reloads them too), e.g.
        tcp:8080:interface=127.0.0.1 or ssl:8443:privateKey=key.pem:certKey=cert.pem [default: off]"""
        if not is_ssl(description):
            try:
                serverFromString(None, description)
            except Exception as error:
                raise usage.UsageError(f"--web {description!r} is not a usable endpoint: {error}") from None
        self["web"].append(description)

    def opt_web_origin(self, origin: str) -> None:
        """An Origin (scheme://host[:port], e.g. https://chat.example.org) whose pages may open /ws, besides the
        page's own; repeat it for several. Other origins get HTTP 403 before the upgrade (a request without Origin, from
        a program rather than a browser page, is let through) [default: the page's own origin only]"""
        try:
            parse_origin(origin)
        except OriginError as error:
            raise usage.UsageError(f"--web-origin {error}") from None
        self["web-origin"].append(origin)

    def opt_auth(self, description: str) -> None:
        try:
            self.addChecker(make_checker(description))
        except AuthError as error:
            raise usage.UsageError(str(error)) from None

    opt_auth.__doc__ = AUTH_HELP

    def opt_metrics(self, description: str) -> None:
        """Twisted server endpoint string to serve /healthz, /readyz, /metrics (Prometheus) and /connections on over
        HTTP; bind it to localhost, e.g. tcp:9464:interface=127.0.0.1 (/connections lists every client's address; a
        warning is logged at start when it listens on anything but loopback) [default: off]"""
        try:
            serverFromString(None, description)
        except Exception as error:
            raise usage.UsageError(f"--metrics {description!r} is not a usable endpoint: {error}") from None
        self["metrics"] = description

    def opt_tls_client_ca(self, path: str) -> None:
        """PEM file of the CA (or CAs) that signs client certificates: every ssl: listener then requires a client
        certificate it signed, and refuses the TLS handshake without one [default: off]"""
        try:
            load_certificates(path, "--tls-client-ca")
        except ConfigError as error:
            raise usage.UsageError(str(error)) from None
        self["tls-client-ca"] = path

    def opt_version(self) -> None:
        """Print hbchat's version (and Twisted's, on a line of its own) and exit."""
        # usage.Options' own --version prints only Twisted's.
        sys.stdout.write(f"hbchat {__version__}\nTwisted {twisted.__version__}\n")
        raise SystemExit(0)

    # usage.Options shows a docstring as written: one line, or its indentation shows too.
    opt_listen.__doc__ = " ".join((opt_listen.__doc__ or "").split())
    opt_state.__doc__ = " ".join((opt_state.__doc__ or "").split())
    opt_metrics.__doc__ = " ".join((opt_metrics.__doc__ or "").split())
    opt_web.__doc__ = " ".join((opt_web.__doc__ or "").split())
    opt_web_origin.__doc__ = " ".join((opt_web_origin.__doc__ or "").split())
    opt_tls_client_ca.__doc__ = " ".join((opt_tls_client_ca.__doc__ or "").split())

    @property
    def checker(self) -> ICredentialsChecker | None:
        """The first --auth checker, or None: authentication is off."""
        checkers: list[ICredentialsChecker] = self.get("credCheckers", [])
        return checkers[0] if checkers else None

    def postOptions(self) -> None:
        if len(self.get("credCheckers", [])) > 1:
            raise usage.UsageError("--auth may be given once")
        try:
            self.config = ServerConfig(
                ping=self["ping"],
                timeout=self["timeout"],
                register_timeout=self["register-timeout"],
                batch_window=self["batch-window"],
                max_line=self["max-line"],
                max_clients=self["max-clients"],
                history=self["history"],
                grace=self["grace"],
                retry_hint=self["retry-hint"],
                drain=self["drain"],
                max_per_ip=self["max-per-ip"],
                sendq_max=self["sendq-max"],
                sendq_soft=self["sendq-soft"],
                rate=self["rate"],
                burst=self["burst"],
                max_handshakes=self["max-handshakes"],
                max_grace=self["max-grace"],
                max_grace_per_ip=self["max-grace-per-ip"],
                auth_checks=self["auth-checks"],
                auth_queue=self["auth-queue"],
                auth_failures=self["auth-failures"],
                listen=tuple(self["listen"]) or DEFAULTS.listen,
                tls_client_ca=self["tls-client-ca"],
                tls_identity=bool(self["tls-identity"]),
            )
            self._checkTLS(self.config, self["web"])
            self._checkWeb()
            if self["reuse-port"]:
                check_reuse_port((*self.config.listen, *self["web"]))
            self.cluster = cluster_options.cluster_settings(self)
        except ConfigError as error:
            raise usage.UsageError(str(error)) from None

    def _checkWeb(self) -> None:
        """--web ssl: endpoints make their contexts now; --web-origin means nothing without --web."""
        if self["web-origin"] and not self["web"]:
            raise ConfigError("--web-origin needs a --web endpoint to apply to")
        for description in self["web"]:
            if is_ssl(description):
                load_options(parse_ssl(description, self.config.tls_client_ca))

    @staticmethod
    def _checkTLS(config: ServerConfig, web: list[str] | None = None) -> None:
        """Every ssl: listener's files make a context now, so a mistake is a usage error, not a traceback."""
        ssl_listeners = [description for description in config.listen if is_ssl(description)]
        if config.tls_client_ca is not None and not ssl_listeners and not any(map(is_ssl, web or [])):
            raise ConfigError("--tls-client-ca needs an ssl: --listen (or --web) endpoint to apply to")
        for description in ssl_listeners:
            load_options(parse_ssl(description, config.tls_client_ca))


class Options(ServerOptions):
    """
    The options as twistd parses them: a bad value is one line on stderr and exit status 1.

    twistd's own handling prints its whole --help before the error, which buries it.
    """

    def parseOptions(self, options: list[str] | None = None) -> None:
        try:
            super().parseOptions(options)
        except usage.UsageError as error:
            sys.stderr.write(f"twistd hbchat: error: {error} (see: twistd hbchat --help)\n")
            raise SystemExit(1) from None


def makeService(options: ServerOptions, reactor: Any = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor as installed_reactor

        reactor = installed_reactor
    config: ServerConfig = options.config
    cluster = getattr(options, "cluster", None)
    if cluster is not None:
        # Imported here: hbchat.cluster's client (txredisapi) installs the default reactor when imported.
        from hbchat.cluster.build import cluster_service

        return cluster_service(options, cluster, reactor)
    factory = ObservedChatFactory(config, reactor, options.checker, identity_refusal=identity_refusal)
    if options["state"] is not None:
        keep_state(factory.chat, options["state"], once_serving=reactor.callWhenRunning)
    service = ChatService(
        factory,
        config.listen,
        reactor,
        tuple(options["web"]),
        tuple(options["web-origin"]),
        reuse_port=bool(options["reuse-port"]),
    )
    if options["metrics"] is not None:
        return WithMetrics(service, factory, options["metrics"], reactor)
    return service
