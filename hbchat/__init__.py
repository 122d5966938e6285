"""hbchat: a line-based chat server and client on Twisted whose heart is its heartbeat."""

__version__ = "0.1.0"
