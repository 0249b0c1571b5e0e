"""The one exception type for bad user input.

Anything the user can fix (an unknown name, an impossible rank, missing data, a broken file) raises
`UserError` with a message that names the bad value and says what to do. The CLI prints that message
alone and exits with status 2; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input: reported as one line, exit status 2, nothing half written."""


def choose(kind: str, value: str, choices: Iterable[str]) -> str:
    """Return `value` if it is one of `choices`, else raise a `UserError` listing them."""
    valid = sorted(choices)
    if value not in valid:
        raise UserError(f"unknown {kind} {value!r}; choose one of: {', '.join(valid)}")
    return value
