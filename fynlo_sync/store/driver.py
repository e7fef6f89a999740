"""Database driver errors (``sqlite3``, ``asyncpg``) at the store's edge, as
:class:`~fynlo_sync.errors.StoreError` subclasses, the driver's error chained
(``__cause__``):

* :class:`~fynlo_sync.errors.StoreBusyError`: the database is locked by another writer, or
  a lock or statement timed out, or a serialization failure (retry soon);
* :class:`~fynlo_sync.errors.StoreFullError`: the disk (or the database's quota) is full;
* :class:`~fynlo_sync.errors.StoreUnavailableError`: the connection was lost or could not
  be made, the server is shutting down, the file cannot be opened;
* anything else a driver raises: :class:`~fynlo_sync.errors.StoreError`.

Errors that are the caller's (a constraint the code relies on, a programming error) are
still :class:`~fynlo_sync.errors.StoreError`: the store failed, and the caller cannot fix
it by changing its input. Only the standard library is imported: asyncpg's errors are
recognised by their module and SQLSTATE, so a terminal without asyncpg loads this.
"""

from __future__ import annotations

import errno
import inspect
import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

from fynlo_sync.errors import (
    StoreBusyError,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
)

__all__ = ["driver_errors", "translate", "translated", "translating"]

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)

#: SQLSTATE classes and codes (PostgreSQL appendix A).
_PG_BUSY = {"40001", "40P01", "55P03", "57014"}  # serialization, deadlock, lock, cancelled
_PG_FULL = {"53100", "53200", "53400"}  # disk full, out of memory, configuration limit
_PG_LOST_CLASSES = ("08",)  # connection exception
_PG_LOST = {"57P01", "57P02", "57P03", "53300"}  # shutdown, crash, cannot connect now, too many


def _sqlite(exc: sqlite3.Error) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    primary = None if code is None else code & 0xFF
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text:
        return StoreBusyError(f"the database is busy: {text}", driver="sqlite3")
    if primary == sqlite3.SQLITE_FULL or "disk is full" in text:
        return StoreFullError(f"the database or disk is full: {text}", driver="sqlite3")
    if primary in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_NOTADB) or (
        isinstance(exc, sqlite3.ProgrammingError) and "closed" in text
    ):
        return StoreUnavailableError(f"the database cannot be used: {text}", driver="sqlite3")
    return StoreError(f"the database failed: {type(exc).__name__}: {text}", driver="sqlite3")


def _asyncpg(exc: BaseException) -> StoreError:
    state = str(getattr(exc, "sqlstate", "") or "")
    name = type(exc).__name__
    text = f"{name}: {exc}"
    if state in _PG_BUSY:
        return StoreBusyError(f"the database is busy: {text}", driver="asyncpg", sqlstate=state)
    if state in _PG_FULL:
        return StoreFullError(f"the database is full: {text}", driver="asyncpg", sqlstate=state)
    if (
        state in _PG_LOST
        or state.startswith(_PG_LOST_CLASSES)
        or name in ("ConnectionDoesNotExistError", "InterfaceError", "InternalClientError")
    ):
        return StoreUnavailableError(
            f"the database connection was lost: {text}", driver="asyncpg", sqlstate=state or None
        )
    return StoreError(f"the database failed: {text}", driver="asyncpg", sqlstate=state or None)


def translate(exc: BaseException) -> StoreError | None:
    """The :class:`StoreError` for a driver's error, or ``None`` when it is not one."""
    if isinstance(exc, StoreError):
        return None
    if isinstance(exc, sqlite3.Error):
        return _sqlite(exc)
    module = type(exc).__module__
    if module == "asyncpg" or module.startswith("asyncpg."):
        return _asyncpg(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return StoreFullError(f"the disk is full: {exc}", driver="os")
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)):
        # asyncpg talks over plain sockets: refused, reset, unknown host, timed out
        return StoreUnavailableError(
            f"the database cannot be reached: {type(exc).__name__}: {exc}", driver="socket"
        )
    return None


@contextmanager
def driver_errors() -> Iterator[None]:
    """Raise a driver's error leaving the block as its :class:`StoreError` (chained)."""
    try:
        yield
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc


def translated(fn: F) -> F:
    """``fn`` (sync or async) with :func:`driver_errors` around each call."""
    if inspect.iscoroutinefunction(fn):

        @wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                mapped = translate(exc)
                if mapped is None:
                    raise
                raise mapped from exc

        return run_async  # type: ignore[return-value]

    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:  # not driver_errors(): a plain try costs nothing on the hot paths
            return fn(*args, **kwargs)
        except Exception as exc:
            mapped = translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    return run  # type: ignore[return-value]


def translating(cls: C) -> C:
    """Class decorator: every public method (and ``__init__``, and classmethods) of ``cls``
    itself, :func:`translated`. A method returning a context manager translates inside it
    (wrap its body in :func:`driver_errors`)."""
    for name, value in list(vars(cls).items()):
        if name != "__init__" and name.startswith("_"):
            continue
        if isinstance(value, classmethod):
            setattr(cls, name, classmethod(translated(value.__func__)))
        elif inspect.isfunction(value):
            setattr(cls, name, translated(value))
    return cls
