"""
hbchat in the browser (``--web``): the chat page and its static files over HTTP, and
``/ws``, a WebSocket (subprotocol ``hbchat.v1``) whose text frames carry the protocol's
lines, one line a frame, to the same :class:`~hbchat.server.connection.ChatServerProtocol`
that TCP clients talk to.
"""
