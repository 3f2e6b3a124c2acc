"""The two kinds of failure a command reports before it does any work.

Both end the command with exit status 2 and one line on stderr (see
``cmdconfig.cli.run``); anything else is exit status 1.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A bad configuration: the message names the key and where it was set."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ConfigError):
    """A bad command line (unknown option, missing argument, bad path)."""


class CommandError(Exception):
    """A failure that is not a usage error: exit 1 with a one-line message.

    The message should say what to do about it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
