"""The server's rooms: the connection and the chat, admission, fan-out and send queues, the
session table and history, its listeners and TLS context, and the twistd service and options.

Nothing is re-exported here: import from the module itself (``hbchat.server.protocol``, ...).
"""
