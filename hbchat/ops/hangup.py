"""
What SIGHUP does, from the server's start to its exit: reload what can be reloaded, and log it.

SIGHUP is ``systemctl reload`` (the shipped unit's ``ExecReload``) and ``kill -HUP``; its
default action kills the process, which systemd does not restart.  So hbchat handles it in
every configuration, from the moment the service starts until the process exits:

- serving, or draining after SIGTERM: every ``ssl:`` listener reads its key and certificate
  files again (:meth:`hbchat.tls.ServerTLS.reload`); without one, "nothing to reload" is
  logged;
- stopped (the drain is over, the process is about to exit): nothing is reloaded, and the
  signal is ignored rather than fatal (see :class:`hbchat.service.ChatService`).

Each SIGHUP is counted by outcome (``hbchat_reloads_total``).  The lifecycle is an automat
machine; the signal handler itself, which only hands the signal over to the reactor, lives in
:mod:`hbchat.service`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from automat import TypeMachineBuilder
from twisted.logger import Logger

#: Outcomes of a SIGHUP, as ``hbchat_reloads_total`` labels them.
RELOAD_OUTCOMES = ("reloaded", "failed", "nothing")


class Reloadable(Protocol):
    """What SIGHUP reloads: an ``ssl:`` listener's TLS (:class:`hbchat.tls.ServerTLS`)."""

    def reload(self) -> bool:
        """Read the files again; False when they were not usable (the old ones stay)."""


class Hangup(Protocol):
    """The inputs of the SIGHUP lifecycle."""

    def hangup(self) -> str:
        """A SIGHUP arrived: reload what can be; the outcome (one of ``RELOAD_OUTCOMES``)."""

    def start(self) -> None:
        """The service starts (again): SIGHUP reloads."""

    def drain(self) -> None:
        """The server is stopping: its listeners close and its clients are told BYE."""

    def stop(self) -> None:
        """The drain is over; the process exits next."""


@dataclass
class HangupCore:
    #: The ssl: listeners' TLS, in the order of --listen.
    reloadables: Sequence[Reloadable]
    #: SIGHUPs, by outcome (``ServerStats.reloads``).
    outcomes: Counter[str] = field(default_factory=Counter)
    log: Logger = field(default_factory=lambda: Logger(namespace="hbchat.hangup"))


def _reload(core: HangupCore, state: str) -> str:
    if not core.reloadables:
        core.log.info("SIGHUP: nothing to reload (no ssl: listener)", state=state)
        outcome = "nothing"
    else:
        core.log.info("SIGHUP: reloading TLS certificates", state=state)
        # Every listener is tried, even after one fails.
        results = [reloadable.reload() for reloadable in core.reloadables]
        outcome = "reloaded" if all(results) else "failed"
    core.outcomes[outcome] += 1
    return outcome


_builder = TypeMachineBuilder(Hangup, HangupCore)
_serving = _builder.state("serving")
_draining = _builder.state("draining")
_stopped = _builder.state("stopped")

_serving.upon(Hangup.start).loop().returns(None)
_draining.upon(Hangup.start).to(_serving).returns(None)
_stopped.upon(Hangup.start).to(_serving).returns(None)
_serving.upon(Hangup.drain).to(_draining).returns(None)
_serving.upon(Hangup.stop).to(_stopped).returns(None)
_draining.upon(Hangup.drain).loop().returns(None)
_draining.upon(Hangup.stop).to(_stopped).returns(None)
_stopped.upon(Hangup.drain).loop().returns(None)
_stopped.upon(Hangup.stop).loop().returns(None)


@_serving.upon(Hangup.hangup).loop()
def _reloadWhileServing(machine: Hangup, core: HangupCore) -> str:
    return _reload(core, "serving")


@_draining.upon(Hangup.hangup).loop()
def _reloadWhileDraining(machine: Hangup, core: HangupCore) -> str:
    # A certificate renewal that signals during a stop must not kill the server mid-drain.
    return _reload(core, "draining")


@_stopped.upon(Hangup.hangup).loop()
def _nothingOnceStopped(machine: Hangup, core: HangupCore) -> str:
    core.log.info("SIGHUP after the server stopped: nothing to reload", state="stopped")
    core.outcomes["nothing"] += 1
    return "nothing"


#: A new lifecycle, serving: ``hangup_machine(HangupCore(reloadables))``.
hangup_machine: Callable[[HangupCore], Hangup] = _builder.build()
