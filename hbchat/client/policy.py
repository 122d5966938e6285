"""
What the client makes of a failure or a server's ERR: which ones end it, as a table.

A failure that reconnecting cannot cure (a :class:`PermanentConnectionError`, or a final
:class:`Diagnosis` from the factory's ``diagnose``, as :mod:`hbchat.client.tls` gives for
TLS) ends the client at once instead of starting the backoff.  A server's ``ERR`` is looked
up in :data:`ERROR_RULES`, first match wins: :func:`error_action` is pure, the factory
(hbchat.client.factory) carries the action out.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from twisted.python.failure import Failure

from hbchat.client.unavailable import refused_verb

#: BYE reasons after which reconnecting would be wrong.
FINAL_BYES = {
    "quit": "you quit",
    "kicked": "the server kicked us",
    "replaced": "another connection resumed our session",
}

#: ERRs during registration after which reconnecting cannot help.
FINAL_ERRORS = {401, 432, 433}

#: Seconds after losing a NICK before WELCOME during which an ERR 433 is taken for our own
#: lost registration (whose session the server keeps for its --grace, 120 s by default)
#: and waited out without counting towards --max-retries.
OWN_NICK_WAIT = 150.0


class PermanentConnectionError(Exception):
    """
    A connection failed for a reason that reconnecting cannot cure (a certificate that
    does not verify, say); its text is one line for a person.  The factory gives up at once.
    """


@dataclass(frozen=True)
class Diagnosis:
    """What a failed or lost connection means, in words, and whether retrying could help."""

    text: str
    final: bool


#: Turns a connection's failure into a :class:`Diagnosis`, or ``None`` for "nothing special".
Diagnose = Callable[[Failure], Diagnosis | None]


class ErrorAction(enum.Enum):
    """What the client does about a server's ERR."""

    #: ERR 404 on RESUME: the session is gone; tell the user, register afresh.
    REGISTER_AFRESH = "register_afresh"
    #: ERR 433 soon after a NICK was lost unanswered: most likely our own registration,
    #: held for the server's --grace: close, and wait without using up the retries.
    WAIT_FOR_OWN_NICK = "wait_for_own_nick"
    #: ERR 413: the oldest unechoed line was too long; it is not sent again.
    DROP_REFUSED = "drop_refused"
    #: ERR 429: the server refused a line for its rate: slow down, send that one again.
    SLOW_DOWN = "slow_down"
    #: ERR 401, 432 or 433 before we are registered: reconnecting cannot help.
    GIVE_UP = "give_up"
    #: ERR 503 cluster unavailable: <VERB> not handled (hbchat.client.unavailable): the
    #: connection stays; the line is kept and sent again after a jittered wait.
    CLUSTER_WAIT = "cluster_wait"
    #: Anything else: tell the user.
    REPORT = "report"


@dataclass(frozen=True)
class ErrorContext:
    """An ERR and what the client was doing when it came."""

    code: int
    resuming: bool
    registering: bool
    ready: bool
    #: A NICK of ours was lost unanswered less than OWN_NICK_WAIT ago.
    own_nick_recent: bool
    #: The ERR's text (after the code).
    text: str = ""


#: The rules, in order; the first whose test holds decides.
ERROR_RULES: tuple[tuple[Callable[[ErrorContext], bool], ErrorAction], ...] = (
    (lambda e: e.code == 503 and refused_verb(e.text) is not None, ErrorAction.CLUSTER_WAIT),
    (lambda e: e.code == 404 and e.resuming, ErrorAction.REGISTER_AFRESH),
    (lambda e: e.code == 433 and e.registering and e.own_nick_recent, ErrorAction.WAIT_FOR_OWN_NICK),
    (lambda e: e.code == 413, ErrorAction.DROP_REFUSED),
    (lambda e: e.code == 429, ErrorAction.SLOW_DOWN),
    (lambda e: e.code in FINAL_ERRORS and not e.ready, ErrorAction.GIVE_UP),
)


def error_action(context: ErrorContext) -> ErrorAction:
    """What to do about an ERR: the first rule that applies, else :attr:`ErrorAction.REPORT`."""
    for applies, action in ERROR_RULES:
        if applies(context):
            return action
    return ErrorAction.REPORT
