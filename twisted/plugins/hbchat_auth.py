"""twisted.cred checker plugin dropin: ``--auth hbpasswd:FILE``.  Kept tiny: the checker lives in hbchat.passwords."""

from __future__ import annotations

from typing import Any

from twisted.cred.credentials import IUsernamePassword
from twisted.cred.strcred import ICheckerFactory
from zope.interface import implementer

from twisted import plugin


@implementer(ICheckerFactory, plugin.IPlugin)
class HashedPasswordCheckerFactory:
    authType = "hbpasswd"
    authHelp = (
        "Checks nick and password against a file of salted scrypt hashes, one 'nick:scrypt$n$r$p$salt$hash' "
        "line per user, managed with hbchat-passwd (add|remove|list FILE NICK). The file is read on every "
        "check, so changes apply without a restart."
    )
    argStringFormat = "The path of a file made with hbchat-passwd."
    credentialInterfaces = (IUsernamePassword,)

    def generateChecker(self, argstring: str = "") -> Any:
        from hbchat.auth.passwords import HashedPasswordChecker, read_entries

        if not argstring.strip():
            raise ValueError("hbpasswd needs a file: --auth hbpasswd:FILE")
        read_entries(argstring)  # fail at start-up on a missing or malformed file
        return HashedPasswordChecker(argstring)


hbpasswd = HashedPasswordCheckerFactory()
