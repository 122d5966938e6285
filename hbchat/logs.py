"""
The name ``twistd --logger`` is given: ``twistd -n --logger hbchat.logs.json_observer hbchat``.

That option is part of the command line operators write (README, docs/operations.md, their
units), so it keeps working where the JSON observer used to live; the observer itself is
:func:`hbchat.ops.logs.json_observer`.
"""

from hbchat.ops.logs import json_observer

__all__ = ["json_observer"]
