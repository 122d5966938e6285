"""
What the lifecycles (automat machines) of hbchat share: a transition that records the state
it enters by name and returns a fixed answer.

Each machine keeps its state's name in its core's ``phase`` (written by its transitions and
by nothing else), so that what is asked on every line or read (is the connection ready? has
it ended?) is an attribute read, not an input; every input returns what it means for the
caller, which acts on it.  Used by hbchat.server.lifecycle, hbchat.client.lifecycle and
hbchat.cluster.membership.
"""

from __future__ import annotations

from typing import Any


def edge(source: Any, upon: Any, target: Any, phase: object, result: object) -> None:
    """``source`` --``upon``--> ``target``, recording ``phase`` in the core and returning ``result``."""

    def transition(machine: object, core: Any) -> object:
        core.phase = phase
        return result

    source.upon(upon).to(target)(transition)
