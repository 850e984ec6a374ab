"""The Pythonic layer over the C ABI: :class:`Engine`.

Results are plain dicts and lists (protobuf's JSON mapping with snake_case
keys, 64-bit integers as ints, enums as their names). Inputs may be dicts,
JSON text, protobuf messages (any object with ``SerializeToString()`` and a
``DESCRIPTOR`` of a rapport.v1 message, e.g. classes generated from
proto/rapport/v1/ when ``google.protobuf`` is installed) or protobuf bytes.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Dict, Iterable, List, Optional, Sequence, TypeVar, Union

from . import _ffi
from ._schema import INT64_FIELDS

_Self = TypeVar("_Self", bound="_Closing")

try:  # Optional: only used to recognise messages and to serialize them.
    import google.protobuf.message as _pb_message  # noqa: F401
    HAVE_PROTOBUF = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_PROTOBUF = False

# Events per call into the library when ingest() is given an iterable: large
# enough that the per-call cost vanishes, small enough to bound memory and the
# size of one atomic unit.
DEFAULT_BATCH_SIZE = 10000

JsonLike = Union[Dict[str, Any], str, bytes]

_SYNC = {"per_batch": _ffi.SYNC_PER_BATCH, "group_commit": _ffi.SYNC_GROUP_COMMIT,
         "off": _ffi.SYNC_OFF}
_BYTES_FORMATS = {"delimited": _ffi.FORMAT_PROTOBUF_DELIMITED,
                  "protobuf": _ffi.FORMAT_PROTOBUF, "json": _ffi.FORMAT_JSON,
                  "json_lines": _ffi.FORMAT_JSON_LINES}


def _dumps_events(events: List[Any]) -> bytes:
    """A list of event dicts as one EventBatch JSON document. Without
    check_circular the encoder skips an id() dict insert and delete per dict
    and list, about an eighth of the time for events; a cyclic input then
    overflows the stack instead, and is encoded again with the check so that
    it fails with json's own "Circular reference detected"."""
    try:
        body = json.dumps(events, separators=(",", ":"), check_circular=False)
    except RecursionError:
        body = json.dumps(events, separators=(",", ":"))
    return ('{"events":' + body + "}").encode()


def _ints(value: Any) -> Any:
    """Protobuf JSON's 64-bit integer strings back to ints, recursively."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in INT64_FIELDS:
                if isinstance(v, str) and v.lstrip("-").isdigit():
                    v = int(v)
                elif isinstance(v, list):
                    v = [int(x) if isinstance(x, str) and x.lstrip("-").isdigit() else _ints(x)
                         for x in v]
                else:
                    v = _ints(v)
            else:
                v = _ints(v)
            out[k] = v
        return out
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def _int64_hook(obj: Dict[str, Any]) -> Dict[str, Any]:
    """json.loads's object_hook doing what _ints does, in place, for one
    object whose nested objects the decoder has already passed through it.
    Only the object's int64 keys are visited (the set intersection runs in
    C), so a result costs no Python call per value: _decode takes about a
    third less time than _ints(json.loads(...)) on ingest results, whose
    actions are most of their bytes. tests/python proves the two equal."""
    for k in INT64_FIELDS.intersection(obj):
        v = obj[k]
        if isinstance(v, str):
            if v.lstrip("-").isdigit():
                obj[k] = int(v)
        elif isinstance(v, list):
            obj[k] = [int(x) if isinstance(x, str) and x.lstrip("-").isdigit() else x
                      for x in v]
    return obj


def _decode(data: bytes) -> Any:
    return json.loads(data, object_hook=_int64_hook) if data else {}


def _is_message(obj: Any) -> bool:
    return hasattr(obj, "SerializeToString") and hasattr(obj, "DESCRIPTOR")


def _message_name(obj: Any) -> str:
    return getattr(obj.DESCRIPTOR, "full_name", "")


def _encode(value: Any, what: str, expected: str) -> (bytes, int):
    """A dict, JSON text, protobuf message or protobuf bytes as (bytes, format)
    for a `const uint8_t*` argument; None means "the defaults"."""
    if value is None:
        return None, _ffi.FORMAT_JSON
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":")).encode(), _ffi.FORMAT_JSON
    if isinstance(value, str):
        return value.encode(), _ffi.FORMAT_JSON
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), _ffi.FORMAT_PROTOBUF
    if _is_message(value):
        name = _message_name(value)
        if name != expected:
            raise TypeError(f"{what}: expected a {expected}, got a {name}")
        return value.SerializeToString(), _ffi.FORMAT_PROTOBUF
    raise TypeError(f"{what}: expected a dict, JSON str, {expected} message or bytes, "
                    f"got {type(value).__name__}")


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(data: bytes, at: int) -> (int, int):
    value, shift = 0, 0
    while True:
        b = data[at]
        at += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, at
        shift += 7


def _ingest_counts(data: bytes) -> Dict[str, Any]:
    """A protobuf rapport.v1.IngestResult without its actions: accepted (1),
    duplicates (2) and rejected (3: index 1, event_id 2, code 3, message 4);
    the actions (4) are skipped unread. Enough wire format for the fast path,
    with no protobuf runtime."""
    result: Dict[str, Any] = {"accepted": 0, "duplicates": 0, "rejected": []}
    at, n = 0, len(data)
    while at < n:
        key, at = _read_varint(data, at)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _read_varint(data, at)
            if field == 1:
                result["accepted"] = value
            elif field == 2:
                result["duplicates"] = value
            continue
        if wire != 2:
            raise _ffi.InternalError(f"unexpected wire type {wire} in an IngestResult")
        size, at = _read_varint(data, at)
        if field == 3:
            rej: Dict[str, Any] = {"index": 0, "event_id": "", "code": 0, "message": ""}
            sub, end = at, at + size
            while sub < end:
                k, sub = _read_varint(data, sub)
                if k & 7 == 0:
                    v, sub = _read_varint(data, sub)
                    rej["index" if k >> 3 == 1 else "code"] = v
                else:
                    length, sub = _read_varint(data, sub)
                    text = data[sub:sub + length].decode("utf-8", "replace")
                    rej["event_id" if k >> 3 == 2 else "message"] = text
                    sub += length
            result["rejected"].append(rej)
        at += size
    return result


class _PyBuffer(ctypes.Structure):
    """CPython's Py_buffer (Include/pybuffer.h, unchanged since 3.3)."""
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p),
                ("len", ctypes.c_ssize_t), ("itemsize", ctypes.c_ssize_t),
                ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p),
                ("strides", ctypes.c_void_p), ("suboffsets", ctypes.c_void_p),
                ("internal", ctypes.c_void_p)]


try:
    _get_buffer = ctypes.pythonapi.PyObject_GetBuffer
    _get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
    _get_buffer.restype = ctypes.c_int
    _release_buffer = ctypes.pythonapi.PyBuffer_Release
    _release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]
    _release_buffer.restype = None
except (AttributeError, OSError):  # pragma: no cover - not CPython: read-only views are copied
    _get_buffer = None

_PyBUF_C_CONTIGUOUS = 0x0020 | 0x0008 | 0x0004  # PyBUF_C_CONTIGUOUS (strides, ND)


class _InputBuffer:
    """A bytes-like input as a `const uint8_t*` argument (``arg``) of ``size``
    bytes, without a copy where possible: bytes as they are; any other
    C-contiguous buffer (bytearray, memoryview, mmap, array) through its own
    memory, held with PyObject_GetBuffer until :meth:`release` (the exporter
    cannot be resized meanwhile). A non-contiguous buffer is copied."""

    __slots__ = ("arg", "size", "_view")

    def __init__(self, data: Any) -> None:
        self._view = None
        if type(data) is bytes:
            self.arg, self.size = data, len(data)
            return
        view = memoryview(data)
        if _get_buffer is None or not view.c_contiguous or view.nbytes == 0:
            data = view.tobytes()
            self.arg, self.size = data, len(data)
            return
        pinned = _PyBuffer()
        if _get_buffer(view, ctypes.byref(pinned), _PyBUF_C_CONTIGUOUS) != 0:
            raise BufferError("ingest: cannot read the buffer")  # pragma: no cover
        self._view = pinned
        self.arg, self.size = ctypes.c_char_p(pinned.buf), pinned.len

    def release(self) -> None:
        if self._view is not None:
            view, self._view = self._view, None
            _release_buffer(ctypes.byref(view))


class _Totals:
    """Sums the IngestResults of several calls into one, with rejection
    indexes relative to the whole input."""

    def __init__(self, want_actions: bool = True) -> None:
        self.want_actions = want_actions
        self.result: Dict[str, Any] = {"accepted": 0, "duplicates": 0, "rejected": []}
        if want_actions:
            self.result["actions"] = []

    def add(self, part: Dict[str, Any], offset: int) -> None:
        r = self.result
        r["accepted"] += part.get("accepted", 0)
        r["duplicates"] += part.get("duplicates", 0)
        for rej in part.get("rejected", ()):
            rej["index"] = rej.get("index", 0) + offset
            r["rejected"].append(rej)
        if self.want_actions:
            r["actions"].extend(part.get("actions", ()))


class _Closing:
    """The lifetime of an object that owns a library handle in `_handle`:
    `close()` (idempotent) releases it, and so do leaving a `with` block and
    garbage collection, so a handle is never leaked nor released twice."""

    _handle: ctypes.c_void_p

    def close(self) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return not getattr(self, "_handle", None)

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing to report to
            pass


class KpiView(_Closing):
    """One KPI query on one engine, with the report it last produced kept
    between refreshes (the C ABI's rapport_kpi_view, over
    Engine::KpisInto): a dashboard that refreshes the same query again and
    again reuses the report's storage instead of building a new one as
    :meth:`Engine.kpis` does (0.56 ms instead of 1.5 ms for a 24-month
    dashboard at 500 000 events, through the C ABI).

    Made by :meth:`Engine.kpi_view`. Release it with :meth:`close` or a
    ``with`` block; closing its engine closes it too (``__del__`` closes a
    forgotten one). Thread-safety: refreshes of one view are serialized by a
    lock; they run alongside the engine's other readers.
    """

    def __init__(self, engine: "Engine", query: JsonLike,
                 message_type: Optional[type] = None) -> None:
        """See :meth:`Engine.kpi_view`."""
        data, fmt = _encode(query, "query", "rapport.v1.KpiQuery")
        if fmt == _ffi.FORMAT_JSON and message_type is not None:
            raise TypeError("kpi_view: a message_type result needs the query as a protobuf "
                            "message or bytes (one format per view)")
        self._lock = threading.Lock()
        self._engine = engine  # kept alive as long as the view
        self._format = fmt
        self._message_type = message_type
        self._handle = ctypes.c_void_p()
        _ffi.rapport_kpi_view_create(ctypes.byref(self._handle), engine._h(), data,
                                     0 if data is None else len(data), fmt)
        engine._views.add(self)

    def refresh(self) -> Any:
        """The query's rapport.v1.KpiReport on the engine's current state: a
        dict (as :meth:`Engine.kpis` returns), or for a query given as
        protobuf the report's bytes (parsed into `message_type` when the view
        has one). Raises OutOfRangeError when a money sum overflows, ValueError
        once the view (or its engine) is closed."""
        with self._lock:
            if not self._handle:
                raise ValueError("the KPI view is closed")
            ptr = _ffi.c_uint8_p()
            size = ctypes.c_size_t(0)
            _ffi.rapport_kpi_view_refresh(ctypes.byref(ptr), ctypes.byref(size), self._handle)
            # The view owns the bytes until its next refresh: copied out here,
            # under the lock.
            raw = ctypes.string_at(ptr, size.value)
        if self._format == _ffi.FORMAT_JSON:
            return _decode(raw)
        return raw if self._message_type is None else self._message_type.FromString(raw)

    def close(self) -> None:
        """Releases the view. Idempotent."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            handle = getattr(self, "_handle", None)
            if handle:
                self._handle = ctypes.c_void_p()
                _ffi.rapport_kpi_view_destroy(handle)


    def __repr__(self) -> str:
        return f"<rapport.KpiView{' closed' if self.closed else ''}>"


class Engine(_Closing):
    """One Rapport engine (an opaque handle of the C library).

    Create it in memory (``Engine(config)``), from a snapshot
    (``Engine.restore(data)``) or on disk (``Engine.open(dir)``). Release it
    with :meth:`close` or a ``with`` block; ``__del__`` closes a forgotten one.

    Thread-safety: the library serializes writers and runs readers
    concurrently, so an Engine may be shared between threads (ctypes releases
    the GIL during each call). Do not close it while another thread uses it.
    """

    def __init__(self, config: Optional[JsonLike] = None) -> None:
        """Creates an engine. `config` is a rapport.v1.EngineConfig (dict, JSON
        text, message or protobuf bytes); None takes every default.

        Raises InvalidArgumentError naming the part of the config that is wrong.
        """
        self._handle = ctypes.c_void_p()
        self._views: "weakref.WeakSet[KpiView]" = weakref.WeakSet()
        data, fmt = _encode(config, "config", "rapport.v1.EngineConfig")
        _ffi.rapport_engine_create(ctypes.byref(self._handle), data,
                                   0 if data is None else len(data), fmt)

    @classmethod
    def _adopt(cls, handle: ctypes.c_void_p) -> "Engine":
        engine = cls.__new__(cls)
        engine._handle = handle
        engine._views = weakref.WeakSet()
        return engine

    @classmethod
    def restore(cls, snapshot: Union[bytes, str, Dict[str, Any]]) -> "Engine":
        """Rebuilds an engine from :meth:`snapshot` output (protobuf bytes, or
        its JSON as text or dict), exactly.

        Raises DataLossError or InvalidArgumentError for damaged input."""
        data, fmt = _encode(snapshot, "snapshot", "rapport.v1.EngineSnapshot")
        if data is None:
            raise TypeError("snapshot: expected bytes, JSON text or a dict, got None")
        handle = ctypes.c_void_p()
        _ffi.rapport_engine_restore(ctypes.byref(handle), data, len(data), fmt)
        return cls._adopt(handle)

    @classmethod
    def open(cls, directory: Union[str, os.PathLike], config: Optional[JsonLike] = None, *,
             sync: str = "per_batch", point_in_time_recovery: bool = False,
             snapshot_every_bytes: Optional[int] = None,
             segment_bytes: Optional[int] = None) -> "Engine":
        """Opens (or creates) the persistent engine in `directory`: every write
        is journaled before it returns. `sync` is "per_batch" (survives power
        loss), "group_commit" or "off" (survives a process crash only).
        `config` is used only when the directory holds no engine yet.
        `snapshot_every_bytes`: a write that brings the journal past this many
        bytes since the last snapshot takes one (0: only checkpoint() does;
        None: 256 MiB). `segment_bytes`: the journal's file size (None: 64 MiB).

        Raises FailedPreconditionError if another engine holds the directory,
        DataLossError for a damaged journal or snapshot, and the file system's
        errors (ResourceExhaustedError, UnavailableError, PermissionDeniedError).
        """
        if sync not in _SYNC:
            raise ValueError(f"sync must be one of {sorted(_SYNC)}, not {sync!r}")
        data, fmt = _encode(config, "config", "rapport.v1.EngineConfig")
        handle = ctypes.c_void_p()
        flags = _ffi.OPEN_POINT_IN_TIME_RECOVERY if point_in_time_recovery else 0
        _ffi.rapport_engine_open_v2(
            ctypes.byref(handle), os.fsencode(directory), data, 0 if data is None else len(data),
            fmt, _SYNC[sync], flags, -1 if snapshot_every_bytes is None else snapshot_every_bytes,
            -1 if segment_bytes is None else segment_bytes)
        return cls._adopt(handle)

    # ---- Lifetime. ----

    def close(self) -> None:
        """Releases the engine (and the lock of a persistent one). Idempotent."""
        handle = getattr(self, "_handle", None)
        if handle:
            # A view borrows its engine (rapport.h): views go first.
            for view in list(getattr(self, "_views", ())):
                view.close()
            self._handle = ctypes.c_void_p()
            _ffi.rapport_engine_destroy(handle)


    def _h(self) -> ctypes.c_void_p:
        if not self._handle:
            raise ValueError("the engine is closed")
        return self._handle

    def _read(self, func, *args: Any) -> bytes:
        out = _ffi.OutBuffer()
        func(*out.args(), *args)
        return out.take()

    # ---- Writes. ----

    def ingest(self, events: Any, *, best_effort: bool = False,
               batch_size: int = DEFAULT_BATCH_SIZE, format: Optional[str] = None,
               actions: bool = True) -> Dict[str, Any]:
        """Ingests events and returns the rapport.v1.IngestResult as a dict:
        ``accepted``, ``duplicates``, ``rejected`` (best effort: each with its
        ``index`` in the whole input, ``event_id``, ``code``, ``message``) and
        ``actions`` the regulations produced.

        `events` may be one event (a dict, a rapport.v1.Event message) or a
        batch: a rapport.v1.EventBatch message; JSON text (one event, or JSON
        lines); bytes (a stream of varint-length-delimited rapport.v1.Event
        messages unless `format` says "protobuf" for an EventBatch, "json" or
        "json_lines"; a bytearray or memoryview likewise, read in place
        without a copy: wrap an mmap or array in a memoryview); or any
        iterable of dicts, JSON strings, Event messages or serialized Events,
        sent to the library `batch_size` at a time.

        Atomicity (the default) holds per call into the library: one dict,
        text or bytes object, or each `batch_size` chunk of an iterable. When
        a chunk fails, the chunks before it stay applied and the exception's
        ``offset`` is the index of the chunk's first event (its message names
        the index within the chunk). With `best_effort` nothing raises for a
        bad event: the good ones apply and the bad ones are listed.

        ``actions=False`` leaves the actions out of the result (they wait in
        the outbox all the same), which spares decoding them: the fast path
        for bulk loads (bench/python_ingest.py measures both ways).

        Raises the exception of the first bad event (atomic), or
        InvalidArgumentError for input that does not parse (either mode).
        """
        mode = _ffi.BATCH_BEST_EFFORT if best_effort else _ffi.BATCH_ATOMIC
        totals = _Totals(actions)
        if isinstance(events, dict):
            self._call_batch(totals, 0, json.dumps(events, separators=(",", ":")).encode(),
                             _ffi.FORMAT_JSON_LINES, mode)
        elif isinstance(events, str):
            self._call_batch(totals, 0, events.encode(), _ffi.FORMAT_JSON_LINES
                             if format is None else _BYTES_FORMATS[format], mode)
        elif isinstance(events, (bytes, bytearray, memoryview)):
            fmt = _BYTES_FORMATS["delimited" if format is None else format]
            self._call_batch(totals, 0, events, fmt, mode)
        elif _is_message(events):
            name = _message_name(events)
            if name == "rapport.v1.EventBatch":
                self._call_batch(totals, 0, events.SerializeToString(), _ffi.FORMAT_PROTOBUF,
                                 mode)
            elif name == "rapport.v1.Event":
                data = events.SerializeToString()
                self._call_batch(totals, 0, _varint(len(data)) + data,
                                 _ffi.FORMAT_PROTOBUF_DELIMITED, mode)
            else:
                raise TypeError(f"ingest: expected a rapport.v1.Event or EventBatch, got {name}")
        else:
            self._ingest_iterable(totals, events, mode, batch_size)
        return totals.result

    def _call_batch(self, totals: _Totals, offset: int, data: Any, fmt: int,
                    mode: int, started: Optional[threading.Event] = None) -> None:
        buf = _InputBuffer(data)
        out = _ffi.OutBuffer()
        want_actions = totals.want_actions
        try:
            if started is not None:
                started.set()  # the caller may take the GIL back: the C call releases it
            _ffi.rapport_ingest_batch_v2(*out.args(), self._h(), buf.arg, buf.size, fmt, mode,
                                         _ffi.FORMAT_JSON if want_actions
                                         else _ffi.FORMAT_PROTOBUF)
        except _ffi.RapportError as e:
            e.offset = offset
            raise
        finally:
            buf.release()
        raw = out.take()
        totals.add(_decode(raw) if want_actions else _ingest_counts(raw), offset)

    def _ingest_iterable(self, totals: _Totals, events: Iterable[Any], mode: int,
                         batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        try:
            iterator = iter(events)
        except TypeError:
            raise TypeError(f"ingest: cannot ingest a {type(events).__name__}") from None
        # Runs of one kind go together: JSON objects as one EventBatch
        # document, protobuf as one delimited stream.
        pending: List[Any] = []
        kind = None  # "dict", "json" or "pb"
        offset = 0
        # Encoding a chunk (json.dumps, under the GIL) overlaps with the
        # library ingesting the previous one (ctypes releases the GIL), which
        # nearly doubles the rate from dicts on two cores. Chunks still go in
        # order, one at a time: chunk k+1 is sent only after chunk k
        # succeeded, so atomicity per chunk and the error offsets hold.
        # The overlap needs a handshake: json.dumps is one long C call that
        # never gives the GIL up, so a worker that had not yet reached its C
        # call when the next dumps began would wait for the GIL until that
        # dumps ended, and the two would run one after the other (that was
        # the 200 k events/s of issue 6). send() therefore waits until the
        # worker is at its C call before it encodes the next chunk.
        executor: Optional[ThreadPoolExecutor] = None
        in_flight: Optional[Future] = None
        deferred: Optional[tuple] = None  # the first chunk: no thread unless a second follows

        def send(data: bytes, fmt: int, at: int) -> None:
            nonlocal executor, in_flight, deferred
            if executor is None:
                if deferred is None:
                    deferred = (at, data, fmt)
                    return
                executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rapport-ingest")
                in_flight = executor.submit(self._call_batch, totals, *deferred, mode)
                deferred = None
            in_flight.result()  # raises the previous chunk's error; then nothing more is sent
            started = threading.Event()
            in_flight = executor.submit(self._call_batch, totals, at, data, fmt, mode, started)
            # Until the worker is in its C call (or failed before it: done).
            while not started.wait(0.05) and not in_flight.done():
                pass

        def finish() -> None:
            if deferred is not None:
                self._call_batch(totals, *deferred, mode)
            elif in_flight is not None:
                in_flight.result()

        def flush() -> None:
            nonlocal pending, offset
            if not pending:
                return
            if kind == "dict":
                data = _dumps_events(pending)
                fmt = _ffi.FORMAT_JSON
            elif kind == "json":
                data = "\n".join(pending).encode()
                fmt = _ffi.FORMAT_JSON_LINES
            else:
                data = b"".join(pending)
                fmt = _ffi.FORMAT_PROTOBUF_DELIMITED
            send(data, fmt, offset)
            offset += len(pending)
            pending = []

        def feed() -> None:
            nonlocal pending, kind
            if isinstance(events, (list, tuple)) and set(map(type, events)) <= {dict}:
                # The common bulk case, without the per-event loop below:
                # whole slices go to json.dumps (C code) at once.
                for start in range(0, len(events), batch_size):
                    pending, kind = list(events[start:start + batch_size]), "dict"
                    flush()
                return
            for item in iterator:
                if isinstance(item, dict):
                    k, v = "dict", item
                elif isinstance(item, str):
                    if "\n" in item.strip():
                        raise ValueError("ingest: a JSON string in an iterable must be one "
                                         "event on one line")
                    k, v = "json", item
                elif isinstance(item, (bytes, bytearray, memoryview)):
                    k, v = "pb", _varint(len(item)) + bytes(item)
                elif _is_message(item) and _message_name(item) == "rapport.v1.Event":
                    data = item.SerializeToString()
                    k, v = "pb", _varint(len(data)) + data
                else:
                    raise TypeError(f"ingest: event {offset + len(pending)} is a "
                                    f"{type(item).__name__}, not a dict, JSON str, "
                                    "rapport.v1.Event or bytes")
                if k != kind or len(pending) >= batch_size:
                    flush()
                    kind = k
                pending.append(v)
            flush()

        try:
            try:
                feed()
            except BaseException:
                # Input that cannot be encoded fails where it is: the chunks
                # before it still go in, in order, as they would have had it
                # come later (an earlier chunk's own error wins).
                finish()
                raise
            finish()
        finally:
            if executor is not None:
                executor.shutdown(wait=True)

    def advance(self, now_us: int) -> List[Dict[str, Any]]:
        """Moves the clock to `now_us` (microseconds since the epoch, UTC) and
        returns the actions whose timers fired. A time at or before the clock
        is a no-op. Raises InvalidArgumentError outside years 1970..9999."""
        data = self._read(_ffi.rapport_advance, self._h(), int(now_us), _ffi.FORMAT_JSON)
        return _decode(data).get("actions", [])

    def acknowledge(self, action_ids: Union[str, Iterable[str]]) -> None:
        """Marks actions acknowledged: they leave the outbox. Again is a no-op.
        Raises NotFoundError naming the first unknown id (then nothing
        changes), InvalidArgumentError for an id given twice."""
        ids = [action_ids] if isinstance(action_ids, str) else list(action_ids)
        encoded = [i.encode() for i in ids]
        arr = (ctypes.c_char_p * len(encoded))(*encoded)
        lens = (ctypes.c_size_t * len(encoded))(*(len(b) for b in encoded))
        _ffi.rapport_acknowledge(self._h(), arr, lens, len(encoded))

    def checkpoint(self) -> None:
        """Persistent engines: writes a snapshot and trims the journal.
        Raises FailedPreconditionError for an in-memory engine."""
        _ffi.rapport_engine_checkpoint(self._h())

    # ---- Reads. ----

    def snapshot(self, *, json_format: bool = False) -> Union[bytes, Dict[str, Any]]:
        """The whole state: deterministic protobuf bytes of a
        rapport.v1.EngineSnapshot (or, with `json_format`, its JSON as a dict
        that :meth:`restore` also takes)."""
        if json_format:
            return json.loads(self._read(_ffi.rapport_engine_snapshot, self._h(),
                                         _ffi.FORMAT_JSON))
        return self._read(_ffi.rapport_engine_snapshot, self._h(), _ffi.FORMAT_PROTOBUF)

    def _result(self, func, args: tuple, message_type: Optional[type]) -> Any:
        """A dict from the JSON result or, given `message_type` (a generated
        protobuf class of the result's rapport.v1 message), that message
        parsed from the protobuf result."""
        if message_type is None:
            return _decode(self._read(func, self._h(), *args, _ffi.FORMAT_JSON))
        return message_type.FromString(self._read(func, self._h(), *args,
                                                  _ffi.FORMAT_PROTOBUF))

    def _get(self, func, entity_id: str, message_type: Optional[type]) -> Any:
        raw = entity_id.encode()
        return self._result(func, (raw, len(raw)), message_type)

    def account(self, account_id: str, message_type: Optional[type] = None) -> Any:
        """The account (rapport.v1.Account). Raises NotFoundError."""
        return self._get(_ffi.rapport_get_account, account_id, message_type)

    def deal(self, deal_id: str, message_type: Optional[type] = None) -> Any:
        """The deal with its stage history (rapport.v1.Deal). Raises NotFoundError."""
        return self._get(_ffi.rapport_get_deal, deal_id, message_type)

    def order(self, order_id: str, message_type: Optional[type] = None) -> Any:
        """The order (rapport.v1.Order). Raises NotFoundError."""
        return self._get(_ffi.rapport_get_order, order_id, message_type)

    def manager(self, manager_id: str, message_type: Optional[type] = None) -> Any:
        """The manager (rapport.v1.Manager). Raises NotFoundError."""
        return self._get(_ffi.rapport_get_manager, manager_id, message_type)

    def team(self, team_id: str, message_type: Optional[type] = None) -> Any:
        """The team (rapport.v1.Team). Raises NotFoundError."""
        return self._get(_ffi.rapport_get_team, team_id, message_type)

    def config(self, message_type: Optional[type] = None) -> Any:
        """The configuration in effect, defaults filled in."""
        return self._result(_ffi.rapport_engine_config, (), message_type)

    @property
    def events_accepted(self) -> int:
        """Events accepted so far (duplicates not counted)."""
        return _ffi.rapport_events_accepted(self._h())

    @property
    def clock_us(self) -> int:
        """The latest advance() time (0 before any)."""
        return _ffi.rapport_clock_us(self._h())

    # rapport.v1.AccountStatus, by name and number.
    ACCOUNT_STATUSES = ("ACCOUNT_STATUS_UNSPECIFIED", "ACCOUNT_STATUS_PROSPECT",
                        "ACCOUNT_STATUS_ACTIVE", "ACCOUNT_STATUS_LEAD", "ACCOUNT_STATUS_CLIENT",
                        "ACCOUNT_STATUS_REPEAT", "ACCOUNT_STATUS_CHURNED")

    def _lines(self, func, *args: Any) -> List[Dict[str, Any]]:
        data = self._read(func, self._h(), *args, _ffi.FORMAT_JSON_LINES)
        return [json.loads(line, object_hook=_int64_hook) for line in data.splitlines() if line]

    def accounts(self, status: Union[str, int]) -> List[Dict[str, Any]]:
        """Accounts with `status` ("ACCOUNT_STATUS_CLIENT", or "client", or its
        number), in order of creation. Raises InvalidArgumentError for an
        unknown status."""
        if isinstance(status, str):
            name = status.upper()
            if not name.startswith("ACCOUNT_STATUS_"):
                name = "ACCOUNT_STATUS_" + name
            if name not in self.ACCOUNT_STATUSES:
                raise rapport_error(_ffi.INVALID_ARGUMENT, f"unknown account status {status!r}")
            status = self.ACCOUNT_STATUSES.index(name)
        return self._lines(_ffi.rapport_accounts_by_status, int(status))

    def account_status_counts(self) -> Dict[str, int]:
        """How many accounts have each status, by status name."""
        counts = (ctypes.c_int64 * 32)()
        written = ctypes.c_size_t(0)
        _ffi.rapport_account_status_counts(counts, len(counts), ctypes.byref(written), self._h())
        names = self.ACCOUNT_STATUSES
        return {names[i] if i < len(names) else str(i): counts[i]
                for i in range(min(written.value, len(counts)))}

    def deals_by_stage(self) -> List[Dict[str, Any]]:
        """Open and won deals per stage of every pipeline, in pipeline and
        stage order (stages with no deals included)."""
        return self._lines(_ffi.rapport_deals_by_stage)

    def stuck_deals(self, at_us: int) -> List[Dict[str, Any]]:
        """Deals whose time in their current stage at `at_us` exceeds the
        stage's SLA, in order of creation."""
        return self._lines(_ffi.rapport_stuck_deals, int(at_us))

    def outbox(self) -> List[Dict[str, Any]]:
        """Actions produced and not yet acknowledged (tasks not yet completed),
        in the order they were produced."""
        return _decode(self._read(_ffi.rapport_outbox, self._h(), _ffi.FORMAT_JSON)).get(
            "actions", [])

    def kpis(self, query: JsonLike, message_type: Optional[type] = None) -> Any:
        """The KPI report (rapport.v1.KpiReport as a dict, or a `message_type`
        message) of a rapport.v1.KpiQuery, e.g. ``{"start_us": a, "end_us":
        b}``; a query given as protobuf gets the report as protobuf. Ratios
        with a zero denominator have no ``value`` key (null, never 0).
        Raises InvalidArgumentError for a bad query, OutOfRangeError when a
        money sum overflows."""
        data, fmt = _encode(query, "query", "rapport.v1.KpiQuery")
        if fmt != _ffi.FORMAT_JSON:
            # A protobuf query gets a protobuf report (one format per call):
            # parsed with `message_type`, else the rapport.v1.KpiReport bytes.
            raw = self._read(_ffi.rapport_kpis, self._h(), data, len(data), _ffi.FORMAT_PROTOBUF)
            return raw if message_type is None else message_type.FromString(raw)
        if message_type is not None:
            raise TypeError("kpis: a message_type result needs the query as a protobuf message "
                            "or bytes (one format per call)")
        return self._result(_ffi.rapport_kpis, (data, 0 if data is None else len(data)), None)

    def kpi_view(self, query: JsonLike, message_type: Optional[type] = None) -> KpiView:
        """A :class:`KpiView` of `query` (a rapport.v1.KpiQuery, as for
        :meth:`kpis`): ``view.refresh()`` returns the report of the engine's
        current state, the same as ``kpis(query)``, reusing the report it
        kept from the previous refresh. The query runs once here, so a bad
        one raises now: InvalidArgumentError as :meth:`kpis` does. Close the
        view (or use ``with``) when done; closing the engine closes it."""
        return KpiView(self, query, message_type)

    def kpi_partial(self, query: JsonLike) -> Dict[str, Any]:
        """The query's partial result over this engine's accounts, for
        :meth:`merge_kpi_partials`. Same errors as :meth:`kpis`."""
        data, fmt = _encode(query, "query", "rapport.v1.KpiQuery")
        return json.loads(self._read(_ffi.rapport_kpi_partial, self._h(), data,
                                     0 if data is None else len(data), _ffi.FORMAT_JSON))

    @staticmethod
    def merge_kpi_partials(partials: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        """Merges kpi_partial() results of engines holding disjoint accounts
        into the report over all of them. Raises InvalidArgumentError for no
        partials, partials of different queries or an account in two."""
        encoded = [json.dumps(p, separators=(",", ":")).encode() if not isinstance(p, bytes)
                   else p for p in partials]
        arr = (ctypes.c_char_p * len(encoded))(*encoded)
        lens = (ctypes.c_size_t * len(encoded))(*(len(b) for b in encoded))
        out = _ffi.OutBuffer()
        _ffi.rapport_kpi_merge(*out.args(), arr, lens, len(encoded), _ffi.FORMAT_JSON)
        return _decode(out.take())

    def grades(self, as_of_us: int, message_type: Optional[type] = None) -> Any:
        """Grades of every manager at `as_of_us` (rapport.v1.GradeEvaluation):
        current and eligible grade, unmet requirements, bonus multiplier, ABC
        tiers and assignment violations. Raises InvalidArgumentError for a
        time outside years 1970..9999."""
        return self._result(_ffi.rapport_grades, (int(as_of_us),), message_type)

    @staticmethod
    def load_rule_set(text: str,
                      pipelines: Optional[Union[Dict[str, Any], str]] = None) -> Dict[str, Any]:
        """Parses and validates a rule set (protobuf text format, or JSON)
        against `pipelines` (a rapport.v1.PipelineSet as a dict or JSON text;
        None: the default pipelines); the result goes in a config's
        ``rule_set``. Raises InvalidArgumentError naming the rule and field."""
        raw = text.encode()
        if pipelines is not None and not isinstance(pipelines, (dict, str)):
            raise TypeError("load_rule_set: pipelines must be a dict or JSON text, not "
                            f"{type(pipelines).__name__}")
        data, _ = _encode(pipelines, "pipelines", "rapport.v1.PipelineSet")
        out = _ffi.OutBuffer()
        _ffi.rapport_load_rule_set(*out.args(), raw, len(raw), data,
                                   0 if data is None else len(data), _ffi.FORMAT_JSON)
        return _decode(out.take())

    @staticmethod
    def default_config(message_type: Optional[type] = None) -> Any:
        """The compiled-in default configuration (rapport.v1.EngineConfig:
        the pipelines of SPEC section 3, the default playbook, the grade
        policy), what ``Engine()`` uses; a dict, or a `message_type`
        message."""
        out = _ffi.OutBuffer()
        fmt = _ffi.FORMAT_JSON if message_type is None else _ffi.FORMAT_PROTOBUF
        _ffi.rapport_default_config(*out.args(), fmt)
        raw = out.take()
        return _decode(raw) if message_type is None else message_type.FromString(raw)

    def __repr__(self) -> str:
        if self.closed:
            return "<rapport.Engine closed>"
        return f"<rapport.Engine events_accepted={self.events_accepted}>"


def rapport_error(code: int, message: str) -> _ffi.RapportError:
    return _ffi.error_for(code, message)


def version_number() -> int:
    """The loaded library's version, X * 1000000 + Y * 1000 + Z."""
    return _ffi.rapport_version_number()
