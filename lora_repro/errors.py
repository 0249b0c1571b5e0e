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


class Unavailable(UserError):
    """Valid input that this machine cannot run: its data files or the hardware it asks for are missing.

    `lora-repro plan` still plans such runs (as `unavailable here`); every other `UserError` stops it.
    """


def user_error_in(err: BaseException) -> UserError | None:
    """The `UserError` that `err` is or wraps, else None.

    OmegaConf re-raises a resolver's error as its own, with the original as the context: an unknown `recipe=`
    surfaces this way.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def choose(kind: str, value: str, choices: Iterable[str]) -> str:
    """Return `value` if it is one of `choices`, else raise a `UserError` listing them."""
    valid = sorted(choices)
    if value not in valid:
        raise UserError(f"unknown {kind} {value!r}; choose one of: {', '.join(valid)}")
    return value
