"""The client's rooms: the protocol and its reconnecting factory, the session and outbox kept
across connections, the backoff, TLS, the reasons told to a user, and ``hbchat-client`` itself.

Nothing is re-exported here: import from the module itself (``hbchat.client.protocol``, ...).
"""
