"""Operations: what an operator sees and does.  The server's counters and reactor lag, the
Prometheus metrics and the HTTP endpoints that serve them, JSON log lines, and SIGHUP reloads.

Nothing is re-exported here: import from the module itself (``hbchat.ops.metrics``, ...).
"""
