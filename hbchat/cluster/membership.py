"""
A node's membership of the cluster as an automat machine: joining, up, cut off, stopped.

============  ===========================================  ============
state         input                                        next state
============  ===========================================  ============
joining       joined (hb_join answered: a fresh lease)     up
joining       lost (Redis unreachable; try again)          joining
up            lost (a link to Redis ended or hung)         cut_off
up            declared_dead (our lease was taken)           joining
cut_off       joined (back, and hb_tick kept our lease)    up
cut_off       declared_dead (back, but our lease was taken) joining
cut_off       lost (still unreachable)                     cut_off
(any)         stop                                         stopped
============  ===========================================  ============

Only ``up`` serves the chat: in the others NICK, RESUME, SAY and TELL are answered ERR 503
and /readyz is 503.  Every transition records its :class:`Phase`, so the question asked on
every verb (are we up?) is an attribute read.  The machine decides; the node
(:mod:`hbchat.cluster.node`) connects, schedules and tells.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from automat import TypeMachineBuilder

from hbchat.machines import edge


class Phase(enum.Enum):
    JOINING = "joining"
    UP = "up"
    CUT_OFF = "cut_off"
    STOPPED = "stopped"


class Reaction(enum.Enum):
    """What an input asks the node to do."""

    #: Serve: the lease is ours.
    SERVE = "serve"
    #: Close every connection (their sessions are in grace, elsewhere) and join as a new node.
    REJOIN = "rejoin"
    #: Stop serving the chat (503) and try Redis again after a backoff.
    RECONNECT = "reconnect"
    #: Nothing new (we are stopping, or a report that changes nothing).
    NOTHING = "nothing"


class NodeLife(Protocol):
    def joined(self) -> Reaction:
        """Redis answered with our lease: a new one (hb_join) or the old one kept (hb_tick)."""

    def lost(self) -> Reaction:
        """A link to Redis failed, ended or stopped answering."""

    def declared_dead(self) -> Reaction:
        """Redis says our lease is gone: the others announced our users' LEFT timeout."""

    def stop(self) -> Reaction:
        """The server stops."""


@dataclass
class LifeCore:
    phase: Phase = Phase.JOINING


_builder = TypeMachineBuilder(NodeLife, LifeCore)
joining = _builder.state(Phase.JOINING.value)
up = _builder.state(Phase.UP.value)
cut_off = _builder.state(Phase.CUT_OFF.value)
stopped = _builder.state(Phase.STOPPED.value)


edge(joining, NodeLife.joined, up, Phase.UP, Reaction.SERVE)
joining.upon(NodeLife.lost).loop().returns(Reaction.RECONNECT)
joining.upon(NodeLife.declared_dead).loop().returns(Reaction.NOTHING)
edge(up, NodeLife.lost, cut_off, Phase.CUT_OFF, Reaction.RECONNECT)
edge(up, NodeLife.declared_dead, joining, Phase.JOINING, Reaction.REJOIN)
up.upon(NodeLife.joined).loop().returns(Reaction.NOTHING)
edge(cut_off, NodeLife.joined, up, Phase.UP, Reaction.SERVE)
edge(cut_off, NodeLife.declared_dead, joining, Phase.JOINING, Reaction.REJOIN)
cut_off.upon(NodeLife.lost).loop().returns(Reaction.RECONNECT)
for _state in (joining, up, cut_off):
    edge(_state, NodeLife.stop, stopped, Phase.STOPPED, Reaction.NOTHING)
for _input in (NodeLife.joined, NodeLife.lost, NodeLife.declared_dead, NodeLife.stop):
    stopped.upon(_input).loop().returns(Reaction.NOTHING)

_build: Callable[[LifeCore], NodeLife] = _builder.build()


def node_life(core: LifeCore) -> NodeLife:
    """A node's membership, joining; ``core.phase`` follows it."""
    return _build(core)
