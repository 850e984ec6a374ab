"""The thin layer: Rapport's C ABI (include/rapport/rapport.h) through ctypes.

Every C function is declared below with its C prototype quoted above it. Each
function that returns an ``int`` status has an ``errcheck`` that turns a
non-zero status into the exception class of that status code, carrying the
code and the library's own message (read right after the call, on the same
thread, as the C ABI's thread-local message requires).

Library discovery, in order:

1. the ``RAPPORT_LIBRARY`` environment variable: a path to ``librapport.so``;
2. ``librapport.so.1`` or ``librapport.so`` next to this package;
3. the system's library search path (``ctypes.util.find_library``).

On load the library's ``rapport_version_number()`` must have the major
version this binding was written for and be at least its version.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Dict, Optional, Type

# The C header's RAPPORT_VERSION_NUMBER this binding was written for
# (X * 1000000 + Y * 1000 + Z).
BINDING_VERSION_NUMBER = 1000

# Status codes: absl::StatusCode numbering, as rapport.h.
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
ABORTED = 10
OUT_OF_RANGE = 11
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
DATA_LOSS = 15
UNAUTHENTICATED = 16

FORMAT_PROTOBUF = 0
FORMAT_JSON = 1
FORMAT_PROTOBUF_DELIMITED = 2
FORMAT_JSON_LINES = 3

BATCH_ATOMIC = 0
BATCH_BEST_EFFORT = 1

SYNC_PER_BATCH = 0
SYNC_GROUP_COMMIT = 1
SYNC_OFF = 2

OPEN_POINT_IN_TIME_RECOVERY = 1

MAX_INPUT_BYTES = 256 << 20
MAX_BATCH_EVENTS = 1 << 20


# ---- Exceptions: one class per status code. ----

class RapportError(Exception):
    """A failed call: ``code`` is the status code (rapport.h), ``message`` the
    library's message naming what was wrong."""

    code: int = UNKNOWN

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})"


class CancelledError(RapportError):
    code = CANCELLED


class UnknownError(RapportError):
    code = UNKNOWN


class InvalidArgumentError(RapportError, ValueError):
    """Bad input: a malformed event, field, query or format."""
    code = INVALID_ARGUMENT


class DeadlineExceededError(RapportError):
    code = DEADLINE_EXCEEDED


class NotFoundError(RapportError, LookupError):
    """An unknown id (account, deal, order, action...)."""
    code = NOT_FOUND


class AlreadyExistsError(RapportError):
    """An event id seen before with other content, or a taken entity id."""
    code = ALREADY_EXISTS


class PermissionDeniedError(RapportError, PermissionError):
    code = PERMISSION_DENIED


class ResourceExhaustedError(RapportError):
    """Over a limit (input size, batch size) or out of memory or disk."""
    code = RESOURCE_EXHAUSTED


class FailedPreconditionError(RapportError):
    """A forbidden transition, or the engine is not in a state for the call
    (not persistent; its directory locked by another engine)."""
    code = FAILED_PRECONDITION


class AbortedError(RapportError):
    code = ABORTED


class OutOfRangeError(RapportError, ValueError):
    """A money sum that would overflow."""
    code = OUT_OF_RANGE


class UnimplementedError(RapportError, NotImplementedError):
    code = UNIMPLEMENTED


class InternalError(RapportError):
    code = INTERNAL


class UnavailableError(RapportError):
    """An I/O error of a persistent engine."""
    code = UNAVAILABLE


class DataLossError(RapportError):
    """A damaged snapshot or journal."""
    code = DATA_LOSS


class UnauthenticatedError(RapportError):
    code = UNAUTHENTICATED


ERRORS: Dict[int, Type[RapportError]] = {
    cls.code: cls
    for cls in (CancelledError, UnknownError, InvalidArgumentError, DeadlineExceededError,
                NotFoundError, AlreadyExistsError, PermissionDeniedError,
                ResourceExhaustedError, FailedPreconditionError, AbortedError,
                OutOfRangeError, UnimplementedError, InternalError, UnavailableError,
                DataLossError, UnauthenticatedError)
}


def error_for(code: int, message: str) -> RapportError:
    """The exception for status `code` (RapportError itself for a code this
    binding does not know, e.g. one appended to a newer library)."""
    cls = ERRORS.get(code)
    if cls is None:
        return RapportError(message, code)
    return cls(message)


class LibraryNotFoundError(ImportError):
    """librapport could not be found or loaded."""


class VersionMismatchError(ImportError):
    """The library found is of another major version, or older than this
    binding."""


# ---- Finding and loading the library. ----

def _candidates():
    env = os.environ.get("RAPPORT_LIBRARY")
    if env:
        yield env, True
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("librapport.so.1", "librapport.so"):
        yield os.path.join(here, name), False
    found = ctypes.util.find_library("rapport")
    if found:
        yield found, True
    yield "librapport.so.1", False


def load_library() -> ctypes.CDLL:
    """Finds librapport (see the module's doc) and checks its version."""
    errors = []
    for path, must_exist in _candidates():
        if not must_exist and os.path.sep in path and not os.path.exists(path):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
            if os.environ.get("RAPPORT_LIBRARY"):
                break
            continue
        lib.rapport_version_number.argtypes = []
        lib.rapport_version_number.restype = ctypes.c_int32
        version = lib.rapport_version_number()
        if (version // 1000000 != BINDING_VERSION_NUMBER // 1000000
                or version < BINDING_VERSION_NUMBER):
            raise VersionMismatchError(
                f"{path} is version {version}; this binding needs "
                f"{BINDING_VERSION_NUMBER // 1000000}.x at least {BINDING_VERSION_NUMBER}")
        return lib
    raise LibraryNotFoundError(
        "librapport not found; set RAPPORT_LIBRARY to its path"
        + ("" if not errors else " (" + "; ".join(errors) + ")"))


lib = load_library()

c_uint8_p = ctypes.POINTER(ctypes.c_uint8)
c_uint8_pp = ctypes.POINTER(c_uint8_p)
c_size_t_p = ctypes.POINTER(ctypes.c_size_t)
c_engine_p = ctypes.c_void_p  # rapport_engine*: opaque
c_engine_pp = ctypes.POINTER(ctypes.c_void_p)
# Inputs are `const uint8_t*`; c_char_p passes a bytes object without a copy.
c_bytes_in = ctypes.c_char_p


def last_error_message() -> str:
    return lib.rapport_last_error_message().decode("utf-8", "replace")


def _check(result: int, func, args):
    if result != OK:
        raise error_for(result, last_error_message())
    return args


def _declare(name: str, restype, argtypes, check: bool = True):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = argtypes
    if check:
        f.errcheck = _check
    return f


# int32_t rapport_version_number(void);
rapport_version_number = _declare("rapport_version_number", ctypes.c_int32, [], check=False)

# const char* rapport_last_error_message(void);
lib.rapport_last_error_message.restype = ctypes.c_char_p
lib.rapport_last_error_message.argtypes = []
rapport_last_error_message = lib.rapport_last_error_message

# void rapport_free(void* buffer);
rapport_free = _declare("rapport_free", None, [ctypes.c_void_p], check=False)

# int rapport_engine_create(rapport_engine** out, const uint8_t* config,
#                           size_t config_len, int format);
rapport_engine_create = _declare(
    "rapport_engine_create", ctypes.c_int,
    [c_engine_pp, c_bytes_in, ctypes.c_size_t, ctypes.c_int])

# void rapport_engine_destroy(rapport_engine* engine);
rapport_engine_destroy = _declare("rapport_engine_destroy", None, [c_engine_p], check=False)

# int rapport_engine_restore(rapport_engine** out, const uint8_t* snapshot,
#                            size_t snapshot_len, int format);
rapport_engine_restore = _declare(
    "rapport_engine_restore", ctypes.c_int,
    [c_engine_pp, c_bytes_in, ctypes.c_size_t, ctypes.c_int])

# int rapport_engine_snapshot(uint8_t** out, size_t* out_len,
#                             const rapport_engine* engine, int format);
rapport_engine_snapshot = _declare(
    "rapport_engine_snapshot", ctypes.c_int, [c_uint8_pp, c_size_t_p, c_engine_p, ctypes.c_int])

# int rapport_ingest_event(uint8_t** result, size_t* result_len,
#                          rapport_engine* engine, const uint8_t* event,
#                          size_t event_len, int format);
rapport_ingest_event = _declare(
    "rapport_ingest_event", ctypes.c_int,
    [c_uint8_pp, c_size_t_p, c_engine_p, c_bytes_in, ctypes.c_size_t, ctypes.c_int])

# int rapport_ingest_batch(uint8_t** result, size_t* result_len,
#                          rapport_engine* engine, const uint8_t* events,
#                          size_t events_len, int format, int mode);
rapport_ingest_batch = _declare(
    "rapport_ingest_batch", ctypes.c_int,
    [c_uint8_pp, c_size_t_p, c_engine_p, c_bytes_in, ctypes.c_size_t, ctypes.c_int,
     ctypes.c_int])

# int rapport_advance(uint8_t** actions, size_t* actions_len,
#                     rapport_engine* engine, int64_t now_us, int format);
rapport_advance = _declare(
    "rapport_advance", ctypes.c_int,
    [c_uint8_pp, c_size_t_p, c_engine_p, ctypes.c_int64, ctypes.c_int])

# int rapport_get_account(uint8_t** out, size_t* out_len,
#                         const rapport_engine* engine, const char* id,
#                         size_t id_len, int format);
# (rapport_get_deal, _order, _manager and _team have the same prototype.)
_GET_ARGS = [c_uint8_pp, c_size_t_p, c_engine_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
rapport_get_account = _declare("rapport_get_account", ctypes.c_int, _GET_ARGS)
# int rapport_get_deal(uint8_t** out, size_t* out_len, const rapport_engine* engine,
#                      const char* id, size_t id_len, int format);
rapport_get_deal = _declare("rapport_get_deal", ctypes.c_int, _GET_ARGS)
# int rapport_get_order(uint8_t** out, size_t* out_len, const rapport_engine* engine,
#                       const char* id, size_t id_len, int format);
rapport_get_order = _declare("rapport_get_order", ctypes.c_int, _GET_ARGS)
# int rapport_get_manager(uint8_t** out, size_t* out_len, const rapport_engine* engine,
#                         const char* id, size_t id_len, int format);
rapport_get_manager = _declare("rapport_get_manager", ctypes.c_int, _GET_ARGS)
# int rapport_get_team(uint8_t** out, size_t* out_len, const rapport_engine* engine,
#                      const char* id, size_t id_len, int format);
rapport_get_team = _declare("rapport_get_team", ctypes.c_int, _GET_ARGS)

# int64_t rapport_events_accepted(const rapport_engine* engine);
rapport_events_accepted = _declare(
    "rapport_events_accepted", ctypes.c_int64, [c_engine_p], check=False)

# int rapport_engine_config(uint8_t** out, size_t* out_len,
#                           const rapport_engine* engine, int format);
rapport_engine_config = _declare(
    "rapport_engine_config", ctypes.c_int, [c_uint8_pp, c_size_t_p, c_engine_p, ctypes.c_int])

# int64_t rapport_clock_us(const rapport_engine* engine);
rapport_clock_us = _declare("rapport_clock_us", ctypes.c_int64, [c_engine_p], check=False)

# int rapport_kpis(uint8_t** out, size_t* out_len, const rapport_engine* engine,
#                  const uint8_t* query, size_t query_len, int format);
rapport_kpis = _declare(
    "rapport_kpis", ctypes.c_int,
    [c_uint8_pp, c_size_t_p, c_engine_p, c_bytes_in, ctypes.c_size_t, ctypes.c_int])

# int rapport_kpi_partial(uint8_t** out, size_t* out_len,
#                         const rapport_engine* engine, const uint8_t* query,
#                         size_t query_len, int format);
rapport_kpi_partial = _declare(
    "rapport_kpi_partial", ctypes.c_int,
    [c_uint8_pp, c_size_t_p, c_engine_p, c_bytes_in, ctypes.c_size_t, ctypes.c_int])

# int rapport_kpi_merge(uint8_t** out, size_t* out_len,
#                       const uint8_t* const* partials, const size_t* partial_lens,
#                       size_t count, int format);
rapport_kpi_merge = _declare(
    "rapport_kpi_merge", ctypes.c_int,
    [c_uint8_pp, c_size_t_p, ctypes.POINTER(ctypes.c_char_p), c_size_t_p, ctypes.c_size_t,
     ctypes.c_int])

# int rapport_engine_open(rapport_engine** out, const char* dir,
#                         const uint8_t* config, size_t config_len, int format,
#                         int sync_mode, int flags);
rapport_engine_open = _declare(
    "rapport_engine_open", ctypes.c_int,
    [c_engine_pp, ctypes.c_char_p, c_bytes_in, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
     ctypes.c_int])

# int rapport_engine_open_v2(rapport_engine** out, const char* dir,
#                            const uint8_t* config, size_t config_len, int format,
#                            int sync_mode, int flags, int64_t snapshot_every_bytes,
#                            int64_t segment_bytes);
rapport_engine_open_v2 = _declare(
    "rapport_engine_open_v2", ctypes.c_int,
    [c_engine_pp, ctypes.c_char_p, c_bytes_in, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
     ctypes.c_int, ctypes.c_int64, ctypes.c_int64])

# int rapport_engine_checkpoint(rapport_engine* engine);
rapport_engine_checkpoint = _declare("rapport_engine_checkpoint", ctypes.c_int, [c_engine_p])

# int rapport_outbox(uint8_t** out, size_t* out_len, const rapport_engine* engine,
#                    int format);
rapport_outbox = _declare(
    "rapport_outbox", ctypes.c_int, [c_uint8_pp, c_size_t_p, c_engine_p, ctypes.c_int])

# int rapport_acknowledge(rapport_engine* engine, const char* const* ids,
#                         const size_t* id_lens, size_t count);
rapport_acknowledge = _declare(
    "rapport_acknowledge", ctypes.c_int,
    [c_engine_p, ctypes.POINTER(ctypes.c_char_p), c_size_t_p, ctypes.c_size_t])

# int rapport_grades(uint8_t** out, size_t* out_len, const rapport_engine* engine,
#                    int64_t as_of_us, int format);
rapport_grades = _declare(
    "rapport_grades", ctypes.c_int,
    [c_uint8_pp, c_size_t_p, c_engine_p, ctypes.c_int64, ctypes.c_int])

# int rapport_load_rule_set(uint8_t** out, size_t* out_len, const char* text,
#                           size_t text_len, const uint8_t* pipelines,
#                           size_t pipelines_len, int format);
rapport_load_rule_set = _declare(
    "rapport_load_rule_set", ctypes.c_int,
    [c_uint8_pp, c_size_t_p, ctypes.c_char_p, ctypes.c_size_t, c_bytes_in, ctypes.c_size_t,
     ctypes.c_int])

# int rapport_ingest_batch_v2(uint8_t** result, size_t* result_len,
#                             rapport_engine* engine, const uint8_t* events,
#                             size_t events_len, int format, int mode,
#                             int result_format);
rapport_ingest_batch_v2 = _declare(
    "rapport_ingest_batch_v2", ctypes.c_int,
    [c_uint8_pp, c_size_t_p, c_engine_p, c_bytes_in, ctypes.c_size_t, ctypes.c_int,
     ctypes.c_int, ctypes.c_int])

# int rapport_accounts_by_status(uint8_t** out, size_t* out_len,
#                                const rapport_engine* engine, int status, int format);
rapport_accounts_by_status = _declare(
    "rapport_accounts_by_status", ctypes.c_int,
    [c_uint8_pp, c_size_t_p, c_engine_p, ctypes.c_int, ctypes.c_int])

# int rapport_deals_by_stage(uint8_t** out, size_t* out_len,
#                            const rapport_engine* engine, int format);
rapport_deals_by_stage = _declare(
    "rapport_deals_by_stage", ctypes.c_int, [c_uint8_pp, c_size_t_p, c_engine_p, ctypes.c_int])

# int rapport_stuck_deals(uint8_t** out, size_t* out_len,
#                         const rapport_engine* engine, int64_t at_us, int format);
rapport_stuck_deals = _declare(
    "rapport_stuck_deals", ctypes.c_int,
    [c_uint8_pp, c_size_t_p, c_engine_p, ctypes.c_int64, ctypes.c_int])

# int rapport_account_status_counts(int64_t* counts, size_t capacity, size_t* written,
#                                   const rapport_engine* engine);
rapport_account_status_counts = _declare(
    "rapport_account_status_counts", ctypes.c_int,
    [ctypes.POINTER(ctypes.c_int64), ctypes.c_size_t, c_size_t_p, c_engine_p])

c_kpi_view_p = ctypes.c_void_p  # rapport_kpi_view*: opaque
c_const_uint8_pp = ctypes.POINTER(c_uint8_p)

# int rapport_kpi_view_create(rapport_kpi_view** out, const rapport_engine* engine,
#                             const uint8_t* query, size_t query_len, int format);
rapport_kpi_view_create = _declare(
    "rapport_kpi_view_create", ctypes.c_int,
    [ctypes.POINTER(c_kpi_view_p), c_engine_p, c_bytes_in, ctypes.c_size_t, ctypes.c_int])

# int rapport_kpi_view_refresh(const uint8_t** report, size_t* report_len,
#                              rapport_kpi_view* view);
rapport_kpi_view_refresh = _declare(
    "rapport_kpi_view_refresh", ctypes.c_int, [c_const_uint8_pp, c_size_t_p, c_kpi_view_p])

# void rapport_kpi_view_destroy(rapport_kpi_view* view);
rapport_kpi_view_destroy = _declare(
    "rapport_kpi_view_destroy", None, [c_kpi_view_p], check=False)

# int rapport_default_config(uint8_t** out, size_t* out_len, int format);
rapport_default_config = _declare(
    "rapport_default_config", ctypes.c_int, [c_uint8_pp, c_size_t_p, ctypes.c_int])


class OutBuffer:
    """The `uint8_t** out, size_t* out_len` pair of a call. ``take()`` copies
    the bytes out and releases the library's buffer with rapport_free()."""

    __slots__ = ("ptr", "len")

    def __init__(self) -> None:
        self.ptr = c_uint8_p()
        self.len = ctypes.c_size_t(0)

    def args(self):
        return ctypes.byref(self.ptr), ctypes.byref(self.len)

    def take(self) -> bytes:
        if not self.ptr:
            return b""
        try:
            return ctypes.string_at(self.ptr, self.len.value)
        finally:
            rapport_free(self.ptr)
            self.ptr = c_uint8_p()
