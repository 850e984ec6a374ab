"""Rapport from Python: an embeddable account-management engine.

A pure-ctypes binding of the C ABI (``librapport.so.1``); it needs nothing
outside the standard library and takes protobuf messages as input when the
host has them::

    import rapport
    with rapport.Engine() as engine:
        engine.ingest({"event_id": "t", "occurred_at_us": 0,
                       "team_upserted": {"team_id": "north"}})
        print(engine.team("north"))

Results are plain dicts. A host with google.protobuf and classes generated
from proto/rapport/v1/ passes messages as input and, with ``message_type=``,
gets results parsed into its classes (``HAVE_PROTOBUF`` says whether the
runtime is importable).

The library is found through ``RAPPORT_LIBRARY``, then next to this package,
then the system (see ``rapport._ffi``).
"""

from ._ffi import (
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    LibraryNotFoundError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    RapportError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
    VersionMismatchError,
)
from .engine import DEFAULT_BATCH_SIZE, HAVE_PROTOBUF, Engine, KpiView, version_number

__all__ = [
    "AbortedError", "AlreadyExistsError", "CancelledError", "DataLossError",
    "DeadlineExceededError", "DEFAULT_BATCH_SIZE", "Engine", "FailedPreconditionError",
    "HAVE_PROTOBUF", "InternalError", "InvalidArgumentError", "KpiView",
    "LibraryNotFoundError",
    "NotFoundError", "OutOfRangeError", "PermissionDeniedError", "RapportError",
    "ResourceExhaustedError", "UnauthenticatedError", "UnavailableError", "UnimplementedError",
    "UnknownError", "VersionMismatchError", "version_number",
]
