"""Errors a user can cause, each carrying the exit code README's table gives it.

`cli.main` turns them into one line on stderr and that exit code; nothing else is caught
there, so a bug still shows its traceback.
"""

from __future__ import annotations

# README exit codes of `submit-training`.
EXIT_BAD_INPUT = 2
EXIT_SPEC_INVALID = 3
EXIT_OSMO_MISSING = 4
EXIT_OSMO_REJECTED = 5
EXIT_OSMO_USAGE = 6
EXIT_OSMO_SERVER = 7
EXIT_OSMO_RATE_LIMITED = 8
EXIT_OSMO_OTHER = 9


class ClientError(Exception):
    """A failure the user can act on: `str(error)` is the message, `exit_code` the code."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInput(ClientError):
    """A flag, value, template, source tree or payload the client refuses (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class SpecInvalid(ClientError):
    """The rendered spec breaks OSMO's rules (exit 3); `problems` holds one line each."""

    exit_code = EXIT_SPEC_INVALID

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class OsmoFailed(ClientError):
    """The osmo CLI is missing or refused the submission (exit 4 to 9)."""
