"""
What the server's and the client's TLS share: reading Twisted endpoint descriptions and
PEM files.

Twisted splits a description (``ssl:6697:privateKey=key.pem``, ``tls:\\:\\:1:6697``) with
``twisted.internet.endpoints._parse``, which is private, and offers no public way to get at
the fields without building the endpoint; :func:`split_description` follows the same rules.
The PEM helpers find certificates and a private key in a file's bytes and load them, and
refuse an encrypted key (:class:`EncryptedKeyError`) rather than let OpenSSL ask for a
passphrase on the terminal.  Everything here is pure; each side words its own errors.
"""

from __future__ import annotations

import re

from OpenSSL import crypto
from twisted.internet.ssl import Certificate

_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.DOTALL)


class EncryptedKeyError(Exception):
    """A private key needs a passphrase: refused, as nobody is there to type it."""


def split_description(description: str) -> tuple[list[str], dict[str, str]]:
    """
    Positional and keyword fields of an endpoint description, by Twisted's rules: ``:``
    separates fields, the first ``=`` in a field makes it a keyword (later ones belong to the
    value), and a backslash takes the next character literally (``privateKey=C\\:\\key.pem``,
    ``tls:\\:\\:1:6697``).  A backslash at the very end stands for nothing; a keyword given
    twice keeps its last value.
    """
    positional: list[str] = []
    keywords: dict[str, str] = {}
    key: str | None = None
    current: list[str] = []

    def end_field() -> None:
        value = "".join(current)
        if key is None:
            positional.append(value)
        else:
            keywords[key] = value

    characters = iter(description)
    for character in characters:
        if character == "\\":
            current.append(next(characters, ""))
        elif character == ":":
            end_field()
            key, current = None, []
        elif character == "=" and key is None:
            key, current = "".join(current), []
        else:
            current.append(character)
    end_field()
    return positional, keywords


def certificate_blocks(data: bytes) -> list[bytes]:
    """Every PEM certificate block in ``data``, in file order (none: an empty list)."""
    return list(_CERTIFICATE.findall(data))


def load_certificates(blocks: list[bytes]) -> list[Certificate]:
    """The certificates of PEM ``blocks``; ``crypto.Error`` if one of them cannot be read."""
    return [Certificate.loadPEM(block) for block in blocks]


def private_key_block(data: bytes) -> bytes | None:
    """The first PEM private key block in ``data`` (any kind: PKCS#8, RSA, EC, encrypted), or None."""
    match = _PRIVATE_KEY.search(data)
    return None if match is None else match.group(0)


def _refuse_passphrase(*args: object) -> bytes:
    # Without a callback OpenSSL would ask for the passphrase of a traditional
    # "Proc-Type: 4,ENCRYPTED" key on the terminal, and the process would wait there.
    raise EncryptedKeyError()


def load_private_key(pem: bytes) -> crypto.PKey:
    """
    The (first) private key in ``pem``: :class:`EncryptedKeyError` if it is encrypted
    (PKCS#8 ``ENCRYPTED PRIVATE KEY`` or a traditional ``Proc-Type: 4,ENCRYPTED`` one),
    ``crypto.Error`` if there is none or it cannot be read.
    """
    block = private_key_block(pem)
    if block is not None and block.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"):
        raise EncryptedKeyError()
    return crypto.load_privatekey(crypto.FILETYPE_PEM, pem, passphrase=_refuse_passphrase)
