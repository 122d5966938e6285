"""twistd plugin dropin: ``twistd hbchat``.  Kept tiny: everything lives in hbchat.tap."""

from twisted.application.service import ServiceMaker

hbchat = ServiceMaker(
    "hbchat",
    "hbchat.server.tap",
    "A chat server with heartbeats that tell live peers from dead ones.",
    "hbchat",
)
