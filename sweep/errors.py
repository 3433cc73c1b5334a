"""Errors a user can see. Each class's docstring is the default message."""

from __future__ import annotations


class SweepError(Exception):
    """Something went wrong in sweep."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class NotFound(SweepError):
    """No such sweep."""


class AlreadyExists(SweepError):
    """A sweep with that name already exists; pick another name."""


class InvalidSweep(SweepError):
    """The sweep definition is not valid."""


class InvalidTransition(SweepError):
    """The sweep cannot move to that state from its current one."""


class NoResultYet(SweepError):
    """No trial of this sweep has completed yet; try again when one has."""


class NotEnoughTrials(SweepError):
    """Too few trials of this sweep have completed for that answer; try again later."""


class SchemaNotReady(SweepError):
    """The database schema is missing or behind; run `sweep db upgrade`."""


class UnsupportedOptunaSchema(SweepError):
    """Optuna's tables are at a schema version sweep was not tested with; install a tested one."""


class DatabaseUnavailable(SweepError):
    """The database cannot be reached right now; try again shortly."""


class ServerBusy(DatabaseUnavailable):
    """The API is serving as many requests as its database connections allow; retry in a second."""


class NotAuthenticated(SweepError):
    """Send a valid token as `Authorization: Bearer <token>`; create one: `sweep token create`."""


class PermissionDenied(SweepError):
    """This token's role does not allow that; ask an admin for a token with a higher role."""


class TokenNotFound(NotFound):
    """No such API token."""


class InvalidToken(SweepError):
    """The token request is not valid."""


class RateLimited(SweepError):
    """Too many requests with this token; wait and try again."""

    def __init__(self, message: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (driver errors run to many), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
