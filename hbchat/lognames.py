"""
Log namespaces that do not follow the code around.

A ``Logger()`` declared on a class names its events after the class's module and name
(``hbchat.server.ChatFactory``), so moving a module renames its log lines.  The namespace
is part of what an operator sees and filters on (``[hbchat.server.ChatFactory#info]``, the
``namespace`` of ``--logger hbchat.logs.json_observer``), so the classes whose events are
documented say theirs outright with a :class:`NamedLogger`.
"""

from __future__ import annotations

from twisted.logger import Logger


class NamedLogger(Logger):
    """
    A class's logger with a fixed namespace: ``log = NamedLogger("hbchat.server.ChatFactory")``.

    Like ``Logger()`` on a class, an event's ``log_source`` is the instance (or the class); only
    the namespace is the one given here rather than the class's module and name.
    """

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace=namespace)

    def __get__(self, instance: object, owner: type | None = None) -> Logger:
        return Logger(self.namespace, owner if instance is None else instance, observer=self.observer)
