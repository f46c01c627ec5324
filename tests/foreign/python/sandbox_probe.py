"""A policy that reports what keyhost's sandbox lets CPython reach.

tests/languages.rs builds it with plugin/python/build.sh and checks a key
with it: it allows every key, and its allow info says how many environment
variables it saw and what happened when it listed `/`, opened a file and
opened a socket. keyhost grants none of these, so each must fail.
"""

import os
import socket

from wit_world import exports
from wit_world.imports.types import Decision, Decision_Allow, Identity, KeyRecord, Request


def attempt(action) -> str:
    """`allowed` if the action succeeded, else the name of the exception."""
    try:
        action()
    except Exception as error:  # any refusal is the answer sought
        return type(error).__name__
    return "allowed"


def open_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.connect(("127.0.0.1", 80))


class Validator(exports.Validator):
    def configure(self, config: list[tuple[str, str]]) -> None:
        pass

    def validate(self, key: KeyRecord, identity: Identity, request: Request) -> Decision:
        return Decision_Allow(
            [
                ("environ", str(len(os.environ))),
                ("list_root", attempt(lambda: os.listdir("/"))),
                ("read_file", attempt(lambda: open("/etc/passwd").read())),
                ("socket", attempt(open_socket)),
            ]
        )
