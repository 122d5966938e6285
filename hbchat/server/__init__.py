"""The server's rooms: the chat, the connection and its verbs, admission and the drain, fan-out
and send queues, the session table and history, its listeners and TLS context, and the twistd
service and options (docs/architecture.md).

Nothing is re-exported here: import from the module itself (``hbchat.server.chat``, ...).
"""
