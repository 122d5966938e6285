"""
``hbchat-passwd``: add, remove and list the users of an hbpasswd file.

The file format and the checker live in :mod:`hbchat.passwords`; this is only the command.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from hbchat import wire
from hbchat.auth.passwords import Hashed, PasswordFileError, file_mode, hash_password, read_entries, write_entries


def _read_new_password(nick: str, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise PasswordFileError("no password on standard input")
        return line.rstrip("\r\n")
    first = getpass.getpass(f"Password for {nick}: ")
    second = getpass.getpass("Again: ")
    if first != second:
        raise PasswordFileError("the passwords do not match")
    return first


def _check_password(password: str) -> None:
    if not password:
        raise PasswordFileError("empty password")
    if any(character.isspace() or not character.isprintable() for character in password):
        # NICK <nick> <password>: the password is one space-free argument.
        raise PasswordFileError("a password may not contain spaces or control characters")


def passwd_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hbchat-passwd",
        description="Manage an hbchat password file of salted scrypt hashes (twistd hbchat --auth hbpasswd:FILE).",
        epilog="Exit status: 0 done, 1 failed (the message says why), 2 bad usage.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add NICK, or change its password (asked twice, without echo)")
    add.add_argument("file", metavar="FILE")
    add.add_argument("nick", metavar="NICK")
    add.add_argument(
        "--stdin",
        action="store_true",
        help="read the password as one line from standard input (for scripts; no confirmation)",
    )
    remove = commands.add_parser("remove", help="remove NICK")
    remove.add_argument("file", metavar="FILE")
    remove.add_argument("nick", metavar="NICK")
    listing = commands.add_parser("list", help="print the nicks in FILE, one a line (never the hashes)")
    listing.add_argument("file", metavar="FILE")
    arguments = parser.parse_args(argv)
    try:
        return _run_passwd(arguments)
    except PasswordFileError as error:
        sys.stderr.write(f"hbchat-passwd: error: {error}\n")
        return 1
    except OSError as error:
        sys.stderr.write(f"hbchat-passwd: error: {arguments.file}: {error.strerror}\n")
        return 1
    except (KeyboardInterrupt, EOFError):
        sys.stderr.write("hbchat-passwd: cancelled\n")
        return 1


def _check_directory(path: str) -> None:
    """A missing directory is named as such (not as a missing FILE), with how to make it."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise PasswordFileError(
            f"{directory}: no such directory (hbchat-passwd does not create it; e.g. install -d -m 750 {directory})"
        )


def _run_passwd(arguments: argparse.Namespace) -> int:
    path: str = arguments.file
    _check_directory(path)
    if arguments.command == "list":
        for listed in read_entries(path):
            print(listed)
        return 0
    nick: str = arguments.nick
    if not wire.is_valid_nick(nick.encode("utf-8")):
        raise PasswordFileError(f"{nick!r} is not a valid nick (1 to 32 of A-Z a-z 0-9 _ - [ ] {{ }} ^ |)")
    entries = read_entries(path) if arguments.command == "remove" or os.path.exists(path) else {}
    if arguments.command == "remove":
        if nick not in entries:
            raise PasswordFileError(f"{nick} is not in {path}")
        del entries[nick]
        _write(path, entries)
        print(f"removed {nick}")
        return 0
    password = _read_new_password(nick, arguments.stdin)
    _check_password(password)
    existed = nick in entries
    entries[nick] = hash_password(password)
    _write(path, entries)
    print(f"{'changed' if existed else 'added'} {nick}")
    return 0


def _write(path: str, entries: dict[str, Hashed]) -> None:
    before = file_mode(path)
    write_entries(path, entries)
    if before is not None and before & 0o007:
        sys.stderr.write(
            f"hbchat-passwd: note: {path} was readable by others (mode {before:04o}); it is now {before & ~0o007:04o}\n"
        )


def main() -> None:
    raise SystemExit(passwd_main())
