"""The Python binding against the freshly built library (CTest sets
RAPPORT_LIBRARY and PYTHONPATH). Every Engine method, every exception class,
library discovery and the version check."""

import gc
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import rapport
from rapport import _ffi
from rapport._schema import INT64_FIELDS

DAY_US = 86400 * 1000000
T0 = 1735689600000000  # 2025-01-01T00:00:00Z
SOURCE_DIR = os.environ.get(
    "RAPPORT_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def ev(event_id, at_us, **payload):
    e = {"event_id": event_id, "occurred_at_us": at_us}
    e.update(payload)
    return e


def seed_events():
    return [
        ev("t", T0, team_upserted={"team_id": "team-1", "name": "North"}),
        ev("m", T0, manager_upserted={"manager_id": "m-1", "team_id": "team-1"}),
        ev("p", T0, account_upserted={"account_id": "p-1", "kind": "ACCOUNT_KIND_PARTNER",
                                      "owner_id": "m-1", "preferred_channel": "CHANNEL_EMAIL"}),
        ev("c", T0, account_upserted={"account_id": "c-1", "kind": "ACCOUNT_KIND_CLIENT",
                                      "owner_id": "m-1", "referred_by": "p-1"}),
        ev("l", T0 + DAY_US, lead_created={"deal_id": "d-1", "account_id": "c-1"}),
        ev("o", T0 + 2 * DAY_US, order_placed={
            "order_id": "o-1", "account_id": "c-1", "deal_id": "d-1",
            "amount": {"amount_minor": 150000, "currency": "RUB"}}),
        ev("pay", T0 + 3 * DAY_US, payment_received={
            "account_id": "c-1", "order_id": "o-1",
            "amount": {"amount_minor": 150000, "currency": "RUB"}}),
    ]


# ---- Hand-encoded protobuf (a few fields of rapport.v1.Event). ----

def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def partner_agreed_pb(event_id, at_us, account_id):
    """rapport.v1.Event{event_id=1, occurred_at_us=2, partner_agreed=17{account_id=1}}."""
    return (field_bytes(1, event_id.encode()) + varint(2 << 3) + varint(at_us)
            + field_bytes(17, field_bytes(1, account_id.encode())))


def delimited(*events):
    return b"".join(varint(len(e)) + e for e in events)


class FakeMessage:
    """Stands in for a generated protobuf class (the test machine has no
    google.protobuf): what the binding relies on is SerializeToString() and
    DESCRIPTOR.full_name."""

    class _Descriptor:
        def __init__(self, full_name):
            self.full_name = full_name

    def __init__(self, full_name, data):
        self.DESCRIPTOR = self._Descriptor(full_name)
        self._data = data

    def SerializeToString(self):
        return self._data


def seeded_engine():
    engine = rapport.Engine()
    result = engine.ingest(seed_events())
    assert result["accepted"] == 7, result
    return engine


class FakeMessageType:
    """Stands in for a generated protobuf class as a result type: FromString."""

    def __init__(self, data):
        self.data = data

    @classmethod
    def FromString(cls, data):
        return cls(data)


class VersionAndLoadingTest(unittest.TestCase):
    def test_version(self):
        self.assertGreaterEqual(rapport.version_number(), _ffi.BINDING_VERSION_NUMBER)
        self.assertEqual(rapport.version_number() // 1000000,
                         _ffi.BINDING_VERSION_NUMBER // 1000000)

    def test_version_mismatch_is_refused(self):
        saved = _ffi.BINDING_VERSION_NUMBER
        try:
            _ffi.BINDING_VERSION_NUMBER = 2000000  # a binding for 2.x
            with self.assertRaises(rapport.VersionMismatchError) as cm:
                _ffi.load_library()
            self.assertIn("2.x", str(cm.exception))
            _ffi.BINDING_VERSION_NUMBER = saved + 1  # newer than the library
            with self.assertRaises(rapport.VersionMismatchError):
                _ffi.load_library()
        finally:
            _ffi.BINDING_VERSION_NUMBER = saved
        self.assertIsNotNone(_ffi.load_library())

    def _import_in(self, pythonpath, env_library):
        env = dict(os.environ, PYTHONPATH=pythonpath)
        env.pop("RAPPORT_LIBRARY", None)
        if env_library is not None:
            env["RAPPORT_LIBRARY"] = env_library
        return subprocess.run(
            [sys.executable, "-c", "import rapport; print(rapport.version_number())"],
            env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())

    def test_discovery_order(self):
        library = os.environ["RAPPORT_LIBRARY"]
        package = os.path.dirname(rapport.__file__)
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "rapport")
            shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
            # RAPPORT_LIBRARY pointing nowhere: a clear error, no fallback.
            p = self._import_in(tmp, "/nonexistent/librapport.so")
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("LibraryNotFoundError", p.stderr)
            self.assertIn("RAPPORT_LIBRARY", p.stderr)
            # No variable: the library next to the package is found.
            os.symlink(os.path.realpath(library), os.path.join(copy, "librapport.so.1"))
            p = self._import_in(tmp, None)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(int(p.stdout), rapport.version_number())


class ExceptionsTest(unittest.TestCase):
    def test_every_code_has_its_class(self):
        classes = {
            1: rapport.CancelledError, 2: rapport.UnknownError, 3: rapport.InvalidArgumentError,
            4: rapport.DeadlineExceededError, 5: rapport.NotFoundError,
            6: rapport.AlreadyExistsError, 7: rapport.PermissionDeniedError,
            8: rapport.ResourceExhaustedError, 9: rapport.FailedPreconditionError,
            10: rapport.AbortedError, 11: rapport.OutOfRangeError,
            12: rapport.UnimplementedError, 13: rapport.InternalError,
            14: rapport.UnavailableError, 15: rapport.DataLossError,
            16: rapport.UnauthenticatedError,
        }
        self.assertEqual(set(_ffi.ERRORS), set(classes))
        for code, cls in classes.items():
            err = _ffi.error_for(code, f"message {code}")
            self.assertIs(type(err), cls)
            self.assertIsInstance(err, rapport.RapportError)
            self.assertEqual(err.code, code)
            self.assertEqual(err.message, f"message {code}")
            self.assertIn(f"code {code}", str(err))
        # A code appended by a newer library: the base class, code kept.
        err = _ffi.error_for(99, "future")
        self.assertIs(type(err), rapport.RapportError)
        self.assertEqual(err.code, 99)
        # Python's own families, so generic handlers work.
        self.assertIsInstance(_ffi.error_for(3, ""), ValueError)
        self.assertIsInstance(_ffi.error_for(5, ""), LookupError)
        self.assertIsInstance(_ffi.error_for(11, ""), ValueError)
        self.assertIsInstance(_ffi.error_for(7, ""), PermissionError)
        self.assertIsInstance(_ffi.error_for(12, ""), NotImplementedError)
        self.assertTrue(issubclass(rapport.LibraryNotFoundError, ImportError))
        self.assertTrue(issubclass(rapport.VersionMismatchError, ImportError))

    def test_library_errors_arrive_typed_with_the_message(self):
        with seeded_engine() as engine:
            with self.assertRaises(rapport.InvalidArgumentError) as cm:
                engine.ingest('{"event_id": "x", "nope": 1}')
            self.assertEqual(cm.exception.code, 3)
            self.assertIn("nope", cm.exception.message)
            with self.assertRaises(rapport.NotFoundError) as cm:
                engine.account("zzz")
            self.assertIn("zzz", cm.exception.message)
            with self.assertRaises(rapport.AlreadyExistsError) as cm:
                engine.ingest(ev("t", T0 + 1, team_upserted={"team_id": "team-2"}))
            self.assertIn("'t'", cm.exception.message)
            with self.assertRaises(rapport.FailedPreconditionError):
                engine.checkpoint()
            # Oversize input is refused on its length, before it is read.
            out = _ffi.OutBuffer()
            with self.assertRaises(rapport.ResourceExhaustedError) as cm:
                _ffi.rapport_ingest_batch(*out.args(), engine._handle, b"x",
                                          _ffi.MAX_INPUT_BYTES + 1,
                                          _ffi.FORMAT_PROTOBUF_DELIMITED, _ffi.BATCH_ATOMIC)
            self.assertIn("limit", cm.exception.message)
            self.assertEqual(out.take(), b"")
            with self.assertRaises(rapport.DataLossError):
                rapport.Engine.restore(b"\x0a\xff\xff\xff")
            # Two payments of the largest amount: their sum overflows.
            big = {"amount_minor": 2 ** 63 - 1, "currency": "USD"}
            engine.ingest([ev("big1", T0 + 5, payment_received={"account_id": "c-1",
                                                                 "amount": big}),
                           ev("big2", T0 + 6, payment_received={"account_id": "c-1",
                                                                 "amount": big})])
            with self.assertRaises(rapport.OutOfRangeError) as cm:
                engine.kpis({"start_us": T0, "end_us": T0 + 365 * DAY_US})
            self.assertIn("USD", cm.exception.message)


class EngineTest(unittest.TestCase):
    def test_create_close_context_manager(self):
        engine = rapport.Engine({"client_churn_after_us": 100 * DAY_US})
        self.assertFalse(engine.closed)
        self.assertEqual(engine.config()["client_churn_after_us"], 100 * DAY_US)
        engine.close()
        engine.close()  # idempotent
        self.assertTrue(engine.closed)
        self.assertIn("closed", repr(engine))
        with self.assertRaises(ValueError):
            engine.events_accepted
        with rapport.Engine('{"client_churn_after_us": "5"}') as engine:
            self.assertEqual(engine.config()["client_churn_after_us"], 5)
            self.assertIn("events_accepted=0", repr(engine))
        self.assertTrue(engine.closed)
        with rapport.Engine(b"") as engine:  # empty protobuf: the defaults
            self.assertIn("pipelines", engine.config())
        with rapport.Engine(FakeMessage("rapport.v1.EngineConfig", b"")) as engine:
            self.assertEqual(engine.events_accepted, 0)
        with self.assertRaises(rapport.InvalidArgumentError):
            rapport.Engine({"no_such_field": 1})
        with self.assertRaises(TypeError):
            rapport.Engine(FakeMessage("rapport.v1.Event", b""))
        with self.assertRaises(TypeError):
            rapport.Engine(42)

    def test_ingest_every_input_kind(self):
        with rapport.Engine() as engine:
            seed = seed_events()
            # One dict; then JSON text of one event; then JSON lines.
            self.assertEqual(engine.ingest(seed[0])["accepted"], 1)
            self.assertEqual(engine.ingest(json.dumps(seed[1]))["accepted"], 1)
            text = "\n".join(json.dumps(e) for e in seed[2:4]) + "\n"
            self.assertEqual(engine.ingest(text)["accepted"], 2)
            # A JSON EventBatch document.
            batch = json.dumps({"events": seed[4:6]})
            self.assertEqual(engine.ingest(batch, format="json")["accepted"], 2)
            self.assertEqual(engine.ingest(batch.encode(), format="json")["duplicates"], 2)
            self.assertEqual(engine.ingest(text.encode(), format="json_lines")["duplicates"], 2)
            # Protobuf: a delimited stream, an EventBatch, messages.
            a = partner_agreed_pb("pa-1", T0 + 10, "p-1")
            b = partner_agreed_pb("pa-2", T0 + 11, "p-1")
            self.assertEqual(engine.ingest(delimited(a, b))["accepted"], 2)
            batch_pb = field_bytes(1, a) + field_bytes(1, b)
            self.assertEqual(engine.ingest(batch_pb, format="protobuf")["duplicates"], 2)
            self.assertEqual(engine.ingest(FakeMessage("rapport.v1.EventBatch", batch_pb))
                             ["duplicates"], 2)
            self.assertEqual(engine.ingest(FakeMessage("rapport.v1.Event", a))["duplicates"], 1)
            with self.assertRaises(TypeError):
                engine.ingest(FakeMessage("rapport.v1.KpiQuery", b""))
            # Any iterable, of mixed kinds, batched internally.
            c = partner_agreed_pb("pa-3", T0 + 12, "p-1")
            mixed = iter([seed[6], json.dumps(seed[0]), c, FakeMessage("rapport.v1.Event", a),
                          {**seed[0], "event_id": "t2"}])
            r = engine.ingest(mixed, batch_size=2)
            self.assertEqual((r["accepted"], r["duplicates"]), (3, 2))
            self.assertEqual(engine.events_accepted, 11)
            self.assertEqual(engine.ingest([])["accepted"], 0)
            with self.assertRaises(TypeError):
                engine.ingest([1.5])
            with self.assertRaises(TypeError):
                engine.ingest(7)
            with self.assertRaises(ValueError):
                engine.ingest(["{}\n{}"])
            with self.assertRaises(ValueError):
                engine.ingest([seed[0]], batch_size=0)

    def test_bulk_dicts_equal_one_by_one(self):
        # The bulk path (a list of dicts, json.dumps without the cycle check,
        # chunks overlapped with the library) reaches the same state as one
        # call per event; a cyclic event fails as json fails it, and the
        # chunks before it stay applied.
        seed = seed_events()
        with rapport.Engine() as bulk, rapport.Engine() as single:
            self.assertEqual(bulk.ingest(seed, batch_size=3)["accepted"], len(seed))
            for e in seed:
                self.assertEqual(single.ingest(e)["accepted"], 1)
            self.assertEqual(bulk.snapshot(), single.snapshot())
        cyclic = {"event_id": "x", "occurred_at_us": T0, "team_upserted": {"team_id": "t"}}
        cyclic["team_upserted"]["self"] = cyclic
        with rapport.Engine() as engine:
            with self.assertRaisesRegex(ValueError, "Circular reference"):
                engine.ingest(seed[:2] + [cyclic], batch_size=2)
            self.assertEqual(engine.events_accepted, 2)

    def test_ingest_atomic_and_best_effort(self):
        with seeded_engine() as engine:
            events = [ev(f"a{i}", T0 + 20 + i, partner_agreed={"account_id": "p-1"})
                      for i in range(5)]
            events[3] = ev("bad", T0 + 30, partner_agreed={"account_id": "nobody"})
            before = engine.events_accepted
            # Atomic per chunk: chunk [0, 2) applies, chunk [2, 4) fails.
            with self.assertRaises(rapport.NotFoundError) as cm:
                engine.ingest(events, batch_size=2)
            self.assertEqual(cm.exception.offset, 2)
            self.assertIn("nobody", cm.exception.message)
            self.assertEqual(engine.events_accepted, before + 2)
            # Best effort: the rest applies; the bad one is listed with its
            # index in the whole input.
            r = engine.ingest(events, best_effort=True, batch_size=2)
            self.assertEqual((r["accepted"], r["duplicates"]), (2, 2))
            self.assertEqual(len(r["rejected"]), 1)
            rej = r["rejected"][0]
            self.assertEqual((rej["index"], rej["event_id"], rej["code"]), (3, "bad", 5))
            self.assertEqual(engine.events_accepted, before + 4)
            # Without actions: the counts and rejections come from the
            # protobuf result, read by the binding's own wire decoder.
            more = [ev(f"q{i}", T0 + 40 + i, partner_agreed={"account_id": "p-1"})
                    for i in range(3)]
            more[1] = ev("bad2", T0 + 50, partner_agreed={"account_id": "nobody-2"})
            r = engine.ingest(more + events[:1], best_effort=True, actions=False,
                              batch_size=3)
            self.assertNotIn("actions", r)
            self.assertEqual((r["accepted"], r["duplicates"]), (2, 1))
            self.assertEqual(r["rejected"], [{"index": 1, "event_id": "bad2", "code": 5,
                                              "message": r["rejected"][0]["message"]}])
            self.assertIn("nobody-2", r["rejected"][0]["message"])
            # Input that does not parse fails either mode.
            with self.assertRaises(rapport.InvalidArgumentError):
                engine.ingest(delimited(b"\xff\xff"), best_effort=True)

    def test_reads(self):
        with seeded_engine() as engine:
            account = engine.account("c-1")
            self.assertEqual(account["account_id"], "c-1")
            self.assertEqual(account["status"], "ACCOUNT_STATUS_CLIENT")
            deal = engine.deal("d-1")
            self.assertEqual(deal["deal_id"], "d-1")
            self.assertEqual(deal["history"], [{"stage": "lead", "entered_at_us": T0 + DAY_US}])
            order = engine.order("o-1")
            self.assertEqual(order["amount"]["amount_minor"], 150000)  # an int, not "150000"
            self.assertEqual(engine.manager("m-1")["team_id"], "team-1")
            self.assertEqual(engine.team("team-1")["name"], "North")
            for getter in (engine.account, engine.deal, engine.order, engine.manager,
                           engine.team):
                with self.assertRaises(rapport.NotFoundError):
                    getter("missing")
            with self.assertRaises(rapport.InvalidArgumentError):
                engine.account("x" * 200)
            self.assertIn("pipelines", engine.config())

    def test_results_as_protobuf_messages(self):
        """With message_type, results come back as protobuf, parsed by it."""
        with seeded_engine() as engine:
            account = engine.account("c-1", message_type=FakeMessageType)
            self.assertIsInstance(account, FakeMessageType)
            self.assertTrue(account.data.startswith(b"\x0a\x03c-1"))  # account_id first
            for getter, entity_id in ((engine.deal, "d-1"), (engine.order, "o-1"),
                                      (engine.manager, "m-1"), (engine.team, "team-1")):
                data = getter(entity_id, message_type=FakeMessageType).data
                self.assertTrue(data.startswith(field_bytes(1, entity_id.encode())), entity_id)
            self.assertIn(b"lead", engine.config(message_type=FakeMessageType).data)
            query = varint(1 << 3) + varint(T0) + varint(2 << 3) + varint(T0 + 365 * DAY_US)
            report = engine.kpis(query, message_type=FakeMessageType).data
            self.assertEqual(report, engine.kpis(query))  # bytes without a type
            self.assertTrue(report.startswith(b"\x0a"))  # the query echoed, field 1
            self.assertEqual(engine.kpis(FakeMessage("rapport.v1.KpiQuery", query),
                                         message_type=FakeMessageType).data, report)
            with self.assertRaises(TypeError):
                engine.kpis({"start_us": T0, "end_us": T0 + 1}, message_type=FakeMessageType)
            grades = engine.grades(T0 + DAY_US, message_type=FakeMessageType).data
            self.assertEqual(grades[:1], b"\x08")  # as_of_us

    def test_lists(self):
        with seeded_engine() as engine:
            clients = engine.accounts("client")
            self.assertEqual([a["account_id"] for a in clients], ["c-1"])
            self.assertEqual(engine.accounts("ACCOUNT_STATUS_PROSPECT")[0]["account_id"], "p-1")
            self.assertEqual(engine.accounts(4), clients)
            self.assertEqual(engine.accounts("churned"), [])
            with self.assertRaises(rapport.InvalidArgumentError):
                engine.accounts("sleepy")
            with self.assertRaises(rapport.InvalidArgumentError):
                engine.accounts(77)
            counts = engine.account_status_counts()
            self.assertEqual(counts["ACCOUNT_STATUS_CLIENT"], 1)
            self.assertEqual(counts["ACCOUNT_STATUS_PROSPECT"], 1)
            self.assertEqual(sum(counts.values()), 2)
            stages = engine.deals_by_stage()
            lead = [s for s in stages if s.get("stage") == "lead"
                    and s.get("pipeline_id") == "client"]
            self.assertEqual(len(lead), 1)
            self.assertEqual(lead[0]["deals"], 1)
            self.assertEqual([d["deal_id"] for d in engine.stuck_deals(T0 + 365 * DAY_US)],
                             ["d-1"])
            self.assertEqual(engine.stuck_deals(T0 + DAY_US + 1), [])

    def test_advance_outbox_acknowledge(self):
        with seeded_engine() as engine:
            self.assertEqual(engine.clock_us, 0)
            r = engine.ingest(ev("call", T0 + 4 * DAY_US, activity={
                "account_id": "p-1", "manager_id": "m-1", "kind": "ACTIVITY_KIND_CALL",
                "direction": "DIRECTION_OUTBOUND"}))
            produced = [a for a in r["actions"] if a.get("template") == "after_first_call"]
            self.assertEqual(len(produced), 1)  # P1
            outbox = engine.outbox()
            ids = [a["action_id"] for a in outbox]
            self.assertIn(produced[0]["action_id"], ids)
            with self.assertRaises(rapport.NotFoundError):
                engine.acknowledge([ids[0], "no-such-action"])
            self.assertEqual(len(engine.outbox()), len(outbox))  # nothing changed
            engine.acknowledge(produced[0]["action_id"])
            engine.acknowledge([produced[0]["action_id"]])  # again: a no-op
            self.assertNotIn(produced[0]["action_id"],
                             [a["action_id"] for a in engine.outbox()])
            # P3: the deal stays in "lead" past its 3-day SLA; advancing fires it.
            actions = engine.advance(T0 + 30 * DAY_US)
            self.assertIsInstance(actions, list)
            self.assertEqual(engine.clock_us, T0 + 30 * DAY_US)
            self.assertTrue(all(a["fired_at_us"] <= T0 + 30 * DAY_US for a in actions))
            self.assertEqual(engine.advance(T0), [])  # the past: a no-op
            with self.assertRaises(rapport.InvalidArgumentError):
                engine.advance(-1)

    def test_snapshot_restore(self):
        with seeded_engine() as engine:
            data = engine.snapshot()
            self.assertIsInstance(data, bytes)
            with rapport.Engine.restore(data) as copy:
                self.assertEqual(copy.snapshot(), data)
                self.assertEqual(copy.account("c-1"), engine.account("c-1"))
            as_json = engine.snapshot(json_format=True)
            self.assertIsInstance(as_json, dict)
            with rapport.Engine.restore(as_json) as copy:
                self.assertEqual(copy.snapshot(), data)
            with rapport.Engine.restore(json.dumps(as_json)) as copy:
                self.assertEqual(copy.events_accepted, engine.events_accepted)
            with self.assertRaises(rapport.RapportError):
                rapport.Engine.restore(data[: len(data) // 2])
            with self.assertRaises(TypeError):
                rapport.Engine.restore(None)

    def test_kpis_partials_merge(self):
        query = {"start_us": T0, "end_us": T0 + 365 * DAY_US}
        with seeded_engine() as engine:
            report = engine.kpis(query)
            values = report["rows"][0]["values"]
            self.assertEqual(values["leads"], 1)
            self.assertEqual(values["revenue"][0]["currency"], "RUB")
            self.assertEqual(values["revenue"][0]["amount_minor"], 150000)
            self.assertNotIn("value", values["win_rate"])  # null: no deal won or lost
            self.assertEqual(engine.kpis(json.dumps(query)), report)
            partial = engine.kpi_partial(query)
            self.assertEqual(rapport.Engine.merge_kpi_partials([partial]), report)
            with self.assertRaises(rapport.InvalidArgumentError):
                rapport.Engine.merge_kpi_partials([])
            other = engine.kpi_partial({**query, "end_us": T0 + 100 * DAY_US})
            with self.assertRaises(rapport.InvalidArgumentError):
                rapport.Engine.merge_kpi_partials([partial, other])
            with self.assertRaises(rapport.InvalidArgumentError):
                engine.kpis({"start_us": T0, "end_us": T0})
            with self.assertRaises(rapport.InvalidArgumentError):
                engine.kpi_partial({"start_us": T0, "end_us": T0 - 1})

    def test_kpi_view(self):
        query = {"start_us": T0, "end_us": T0 + 365 * DAY_US}
        with seeded_engine() as engine:
            with engine.kpi_view(query) as view:
                self.assertIsInstance(view, rapport.KpiView)
                self.assertEqual(view.refresh(), engine.kpis(query))
                # The kept report is refilled from the current state, never stale.
                engine.ingest(ev("pay-2", T0 + 4 * DAY_US, payment_received={
                    "account_id": "c-1", "order_id": "o-1",
                    "amount": {"amount_minor": 70000, "currency": "USD"}}))
                report = view.refresh()
                self.assertEqual(report, engine.kpis(query))
                currencies = {line["currency"] for line in report["rows"][0]["values"]["revenue"]}
                self.assertEqual(currencies, {"RUB", "USD"})
                self.assertEqual(view.refresh(), report)
                # JSON text works as the query too.
                with engine.kpi_view(json.dumps(query)) as again:
                    self.assertEqual(again.refresh(), report)
            self.assertTrue(view.closed)
            view.close()  # idempotent
            with self.assertRaises(ValueError):
                view.refresh()
            # A protobuf query: the report's protobuf bytes, as kpis() gives.
            q = varint(1 << 3) + varint(T0) + varint(2 << 3) + varint(T0 + 365 * DAY_US)
            with engine.kpi_view(q) as pview:
                raw = pview.refresh()
                self.assertIsInstance(raw, bytes)
                self.assertEqual(raw, engine.kpis(q))
            with engine.kpi_view(q, message_type=FakeMessageType) as mview:
                self.assertEqual(mview.refresh().data, raw)
            with self.assertRaises(TypeError):
                engine.kpi_view(query, message_type=FakeMessageType)
            # A bad query fails at creation, as kpis() does.
            with self.assertRaises(rapport.InvalidArgumentError):
                engine.kpi_view({"start_us": T0, "end_us": T0})
            with self.assertRaises(rapport.InvalidArgumentError):
                engine.kpi_view({"bucket": "NOPE"})
            with self.assertRaises(TypeError):
                engine.kpi_view(3.5)
            # Closing the engine closes its views first (a view borrows it).
            open_view = engine.kpi_view(query)
        self.assertTrue(open_view.closed)
        with self.assertRaises(ValueError):
            open_view.refresh()
        with self.assertRaises(ValueError):
            engine.kpi_view(query)  # a closed engine

    def test_kpi_view_threads(self):
        """Refreshes of one view from several threads are serialized by its
        lock; each gets the whole report."""
        import threading
        query = {"start_us": T0, "end_us": T0 + 365 * DAY_US}
        with seeded_engine() as engine, engine.kpi_view(query) as view:
            want = engine.kpis(query)
            results, errors = [], []

            def work():
                try:
                    for _ in range(50):
                        results.append(view.refresh() == want)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            threads = [threading.Thread(target=work) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            self.assertEqual(results, [True] * 200)

    def test_default_config(self):
        default = rapport.Engine.default_config()
        with rapport.Engine() as engine:
            self.assertEqual(default, engine.config())
        self.assertIn("partner", [p["id"] for p in default["pipelines"]["pipelines"]])
        raw = rapport.Engine.default_config(message_type=FakeMessageType).data
        self.assertIsInstance(raw, bytes)
        self.assertGreater(len(raw), 0)

    def test_grades(self):
        with seeded_engine() as engine:
            grades = engine.grades(T0 + 365 * DAY_US)
            self.assertEqual(grades["as_of_us"], T0 + 365 * DAY_US)
            managers = {m["manager_id"]: m for m in grades["managers"]}
            self.assertIn("m-1", managers)
            self.assertTrue(managers["m-1"]["eligible_grade"])
            with self.assertRaises(rapport.InvalidArgumentError):
                engine.grades(-1)

    def test_load_rule_set(self):
        text = ('id: "mine" version: 1 templates: "hello" rules { id: "R-1" trigger { '
                'on_event { filter { type: EVENT_TYPE_PARTNER_AGREED } } } actions { '
                'kind: ACTION_KIND_SEND_MESSAGE template: "hello" } }')
        rules = rapport.Engine.load_rule_set(text)
        self.assertEqual(rules["rules"][0]["id"], "R-1")
        self.assertEqual(rules["version"], 1)
        # Against given pipelines (here the defaults, as a dict and as text).
        pipelines = rapport.Engine.default_config()["pipelines"]
        self.assertEqual(rapport.Engine.load_rule_set(text, pipelines), rules)
        self.assertEqual(rapport.Engine.load_rule_set(text, json.dumps(pipelines)), rules)
        with self.assertRaises(rapport.InvalidArgumentError):
            rapport.Engine.load_rule_set(text, {"pipelines": [{"id": 5}]})
        with self.assertRaises(TypeError):
            rapport.Engine.load_rule_set(text, b"\x0a\x00")
        with rapport.Engine({"rule_set": rules}) as engine:
            engine.ingest(seed_events())
            r = engine.ingest(ev("agree", T0 + 5, partner_agreed={"account_id": "p-1"}))
            self.assertEqual([a["rule_id"] for a in r["actions"]], ["R-1"])
        with self.assertRaises(rapport.InvalidArgumentError) as cm:
            rapport.Engine.load_rule_set(text.replace('template: "hello"', 'template: "bye"'))
        self.assertIn("R-1", cm.exception.message)

    def test_open_checkpoint_and_del(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "engine")
            with rapport.Engine.open(path, sync="off") as engine:
                engine.ingest(seed_events())
                engine.advance(T0 + 10 * DAY_US)
                with self.assertRaises(rapport.FailedPreconditionError):
                    rapport.Engine.open(path)  # locked
                engine.checkpoint()
            with rapport.Engine.open(path, point_in_time_recovery=True) as engine:
                self.assertEqual(engine.events_accepted, 7)
                self.assertEqual(engine.clock_us, T0 + 10 * DAY_US)
            # A forgotten engine is closed by __del__: the lock is released.
            engine = rapport.Engine.open(path, sync="group_commit")
            del engine
            gc.collect()
            rapport.Engine.open(path).close()
            with self.assertRaises(ValueError):
                rapport.Engine.open(path, sync="sometimes")
            with self.assertRaises(rapport.RapportError):
                rapport.Engine.open(os.path.join(tmp, "no", "such", "parent"))

    def test_open_with_a_snapshot_policy(self):
        def journal_bytes(path):
            return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
                       if n.startswith("journal-"))

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "engine")
            # Only explicit checkpoints: the write stays in the journal.
            with rapport.Engine.open(path, sync="off", snapshot_every_bytes=0) as engine:
                engine.ingest(seed_events()[:3])
                self.assertGreater(journal_bytes(path), 0)
            # A snapshot after every write: the journal it covers is dropped.
            with rapport.Engine.open(path, sync="off", snapshot_every_bytes=1,
                                     segment_bytes=4096) as engine:
                engine.ingest(seed_events()[3:])
                self.assertEqual(journal_bytes(path), 0, os.listdir(path))
            with rapport.Engine.open(path) as engine:
                self.assertEqual(engine.events_accepted, 7)
            for bad in ({"segment_bytes": 0}, {"segment_bytes": -2},
                        {"snapshot_every_bytes": -5}):
                with self.assertRaises(rapport.InvalidArgumentError) as cm:
                    rapport.Engine.open(path, **bad)
                self.assertIn(next(iter(bad)), cm.exception.message)


class FastPathsTest(unittest.TestCase):
    """Each fast path of the binding against the reference path it replaces."""

    def test_decode_hook_equals_ints_over_json_loads(self):
        from rapport.engine import _decode, _ints
        raws = []
        with seeded_engine() as engine:
            def grab(func, *args):
                out = _ffi.OutBuffer()
                func(*out.args(), engine._h(), *args)
                raws.append(out.take())
            call = json.dumps(ev("call", T0 + 4 * DAY_US, activity={
                "account_id": "p-1", "manager_id": "m-1", "kind": "ACTIVITY_KIND_CALL",
                "direction": "DIRECTION_OUTBOUND"})).encode()
            grab(_ffi.rapport_ingest_batch_v2, call, len(call), _ffi.FORMAT_JSON_LINES,
                 _ffi.BATCH_ATOMIC, _ffi.FORMAT_JSON)
            grab(_ffi.rapport_advance, T0 + 60 * DAY_US, _ffi.FORMAT_JSON)
            grab(_ffi.rapport_outbox, _ffi.FORMAT_JSON)
            query = json.dumps({"start_us": T0, "end_us": T0 + 365 * DAY_US}).encode()
            grab(_ffi.rapport_kpis, query, len(query), _ffi.FORMAT_JSON)
            grab(_ffi.rapport_grades, T0 + 90 * DAY_US, _ffi.FORMAT_JSON)
            grab(_ffi.rapport_engine_snapshot, _ffi.FORMAT_JSON)
            grab(_ffi.rapport_engine_config, _ffi.FORMAT_JSON)
            grab(_ffi.rapport_get_deal, b"d-1", 3, _ffi.FORMAT_JSON)
        self.assertIn(b'"actions"', raws[0])
        # The edge cases of _ints: int64 keys holding digit strings, negative
        # ones, other strings, lists (of strings, objects and lists), objects;
        # other keys holding digit strings; top-level lists.
        raws.append(json.dumps({
            "times_us": ["1", "-2", "x", ["3"], {"value": "4"}, 5],
            "value": "-5", "deals": {"value": "7", "name": "8"}, "seq": "x1",
            "name": "9", "nested": [{"accepted": "10"}, ["11"], "12"],
            "index": None, "version": 3.5}).encode())
        raws.append(b'[{"accepted": "1"}, "2", [{"duplicates": "3"}]]')
        for raw in raws:
            self.assertEqual(_decode(raw), _ints(json.loads(raw)), raw[:200])
        self.assertEqual(_decode(raws[-2])["times_us"], [1, -2, "x", ["3"], {"value": 4}, 5])

    def test_buffers_are_read_in_place_and_equal_bytes(self):
        import array
        import mmap
        events = [partner_agreed_pb(f"pa-{i}", T0 + 10 + i, "p-1") for i in range(6)]
        stream = delimited(*events)
        with seeded_engine() as reference:
            reference.ingest(stream)
            want = reference.snapshot()
        as_mmap = mmap.mmap(-1, len(stream))
        as_mmap.write(stream)
        padded = b"junk" + stream + b"more"
        inputs = {
            "bytearray": bytearray(stream),
            "memoryview of bytes, a slice": memoryview(padded)[4:4 + len(stream)],
            "memoryview of a bytearray": memoryview(bytearray(padded))[4:-4],
            "memoryview of an mmap": memoryview(as_mmap),
            "memoryview of an array": memoryview(array.array("B", stream)),
            "non-contiguous (copied)": memoryview(bytes(b for c in stream for b in (c, 0)))[::2],
        }
        for name, data in inputs.items():
            with self.subTest(name), seeded_engine() as engine:
                self.assertEqual(engine.ingest(data)["accepted"], 6)
                self.assertEqual(engine.snapshot(), want)
        # The buffer is released after the call: a bytearray can grow again.
        grown = inputs["bytearray"]
        grown.extend(b"x")
        with seeded_engine() as engine:
            # And released after a failing call too.
            bad = bytearray(delimited(b"\xff\xff"))
            with self.assertRaises(rapport.InvalidArgumentError):
                engine.ingest(bad)
            bad.extend(b"x")
            self.assertEqual(engine.ingest(bytearray())["accepted"], 0)
        inputs.clear()  # the views, before their mmap
        as_mmap.close()

    def test_a_chunk_is_encoded_while_the_previous_one_is_in_the_library(self):
        """The overlap itself: from the third chunk on (the first goes alone,
        the second after it), json.dumps of chunk k starts while the C call
        of chunk k - 1 runs. Without the handshake the worker waited for the
        GIL until that dumps ended, and nothing overlapped."""
        import threading
        import time
        from rapport import engine as engine_module
        in_call = threading.Event()
        overlapped = []
        real_dumps, real_call = engine_module._dumps_events, _ffi.rapport_ingest_batch_v2

        def dumps(events):
            overlapped.append(in_call.is_set())
            return real_dumps(events)

        def call(*args):
            in_call.set()
            try:
                time.sleep(0.02)  # a slow library: the encoder must not wait for it
                return real_call(*args)
            finally:
                in_call.clear()

        events = seed_events() + [
            ev(f"call-{i}", T0 + 4 * DAY_US, activity={
                "account_id": "p-1", "manager_id": "m-1", "kind": "ACTIVITY_KIND_CALL",
                "direction": "DIRECTION_OUTBOUND"}) for i in range(7)]
        engine_module._dumps_events, _ffi.rapport_ingest_batch_v2 = dumps, call
        # No forced GIL switch within the test (a descheduled worker could
        # otherwise lose the GIL between its handshake and its call): the
        # threads hand the GIL over only where they block.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(5.0)
        try:
            with rapport.Engine() as engine:
                self.assertEqual(engine.ingest(events, batch_size=2)["accepted"], len(events))
        finally:
            sys.setswitchinterval(interval)
            engine_module._dumps_events, _ffi.rapport_ingest_batch_v2 = real_dumps, real_call
        self.assertEqual(len(overlapped), 7)
        self.assertEqual(overlapped[2:], [True] * 5)

    def test_overlapped_chunks_equal_one_call_and_stop_at_the_first_error(self):
        # From the second chunk on, a chunk is encoded while the previous one
        # is ingested on another thread.
        seed = seed_events()
        call = ev("call", T0 + 4 * DAY_US, activity={
            "account_id": "p-1", "manager_id": "m-1", "kind": "ACTIVITY_KIND_CALL",
            "direction": "DIRECTION_OUTBOUND"})
        events = seed + [call]
        with rapport.Engine() as chunked, rapport.Engine() as whole:
            a = chunked.ingest(events, batch_size=2)
            b = whole.ingest(events, batch_size=len(events))
            self.assertEqual(a, b)
            self.assertTrue(a["actions"])
            self.assertEqual(chunked.snapshot(), whole.snapshot())
        for kind, items in (("dicts", list(events)),
                            ("JSON strings", [json.dumps(e) for e in events])):
            with self.subTest(kind):
                # A chunk that does not parse: the chunks before it are in,
                # none after it; the offset is its first event.
                bad = list(items)
                bad[5] = "{oops" if kind == "JSON strings" else {"event_id": "x", "nope": 1}
                with rapport.Engine() as engine:
                    with self.assertRaises(rapport.InvalidArgumentError) as cm:
                        engine.ingest(iter(bad), batch_size=2)
                    self.assertEqual(cm.exception.offset, 4)
                    self.assertEqual(engine.events_accepted, 4)
                # A chunk that parses but fails to ingest, with the next one
                # already encoded: that one is dropped.
                bad = list(items)
                wrong = ev("w", T0, partner_agreed={"account_id": "nobody"})
                bad[2] = json.dumps(wrong) if kind == "JSON strings" else wrong
                with rapport.Engine() as engine:
                    with self.assertRaises(rapport.NotFoundError) as cm:
                        engine.ingest(iter(bad), batch_size=2)
                    self.assertEqual(cm.exception.offset, 2)
                    self.assertEqual(engine.events_accepted, 2)

    def test_concurrent_advances_fire_each_timer_once(self):
        # rapport_advance refills a list the engine keeps, under its own
        # lock: threads advancing one engine at once (ctypes releases the
        # GIL) get, together, exactly the actions one thread gets.
        import threading
        config = {"rule_set": {"id": "t", "version": 1, "rules": [{
            "id": "follow_up", "delay_us": 30 * DAY_US,
            "trigger": {"on_event": {"filter": {"type": "EVENT_TYPE_ACCOUNT_UPSERTED"}}},
            "actions": [{"kind": "ACTION_KIND_CREATE_TASK", "assignee": "ASSIGNEE_OWNER",
                         "due_offset_us": DAY_US, "template": "follow_up"}]}]}}

        def load(engine):
            engine.ingest(seed_events()[:2])
            engine.ingest([ev(f"a{i}", T0 + i * DAY_US // 30, account_upserted={
                "account_id": f"c{i}", "kind": "ACCOUNT_KIND_CLIENT", "owner_id": "m-1"})
                for i in range(300)])
        times = [T0 + 30 * DAY_US + i * DAY_US // 40 for i in range(400)]
        with rapport.Engine(config) as shared, rapport.Engine(config) as single:
            load(shared)
            load(single)
            want = sorted(a["action_id"] for t in times for a in single.advance(t))
            self.assertGreaterEqual(len(want), 300)
            got, lock = [], threading.Lock()
            def run(part):
                for t in part:
                    actions = shared.advance(t)
                    with lock:
                        got.extend(a["action_id"] for a in actions)
            threads = [threading.Thread(target=run, args=(times[i::4],)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(sorted(got), want)

    def test_json_lines_equal_dicts_and_name_the_line(self):
        seed = seed_events()
        text = "\n\n".join("  " + json.dumps(e) + "\r" for e in seed) + "\n"
        with rapport.Engine() as lines, rapport.Engine() as dicts:
            self.assertEqual(lines.ingest(text.encode(), format="json_lines")["accepted"],
                             len(seed))
            self.assertEqual(dicts.ingest(seed)["accepted"], len(seed))
            self.assertEqual(lines.snapshot(), dicts.snapshot())
            bad = json.dumps(ev("x", T0, partner_agreed={"account_id": "p-1"})) + "\n\n{oops"
            before = lines.snapshot()
            with self.assertRaisesRegex(rapport.InvalidArgumentError, "line 3"):
                lines.ingest(bad, best_effort=True)
            self.assertEqual(lines.snapshot(), before)


class FfiDeclarationsTest(unittest.TestCase):
    def test_every_c_function_is_declared_with_its_prototype(self):
        """Each function of rapport.h has argtypes of its arity and restype in
        _ffi, and its prototype quoted in a comment above it."""
        with open(os.path.join(SOURCE_DIR, "include", "rapport", "rapport.h")) as f:
            header = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
        protos = re.findall(r"RAPPORT_C_API\s+([^;(]*?)\b(rapport_\w+)\s*\(([^)]*)\)\s*;",
                            header)
        self.assertGreaterEqual(len(protos), 30)
        with open(_ffi.__file__) as f:
            ffi_source = re.sub(r"\s+", " ", f.read())
        for ret, name, params in protos:
            f = getattr(_ffi, name, None)
            self.assertIsNotNone(f, f"{name} is not declared in _ffi.py")
            arity = 0 if params.strip() in ("", "void") else params.count(",") + 1
            self.assertEqual(len(f.argtypes), arity, name)
            self.assertIn(f"{name}(", ffi_source, name)
            self.assertIn(f"# {ret.strip()} {name}(".replace("  ", " "), ffi_source, name)
            if ret.strip() == "int":  # a status: checked
                self.assertIs(f.errcheck, _ffi._check, name)


class SchemaTest(unittest.TestCase):
    def test_int64_fields_match_the_protos(self):
        names = set()
        protos = glob.glob(os.path.join(SOURCE_DIR, "proto", "rapport", "v1", "*.proto"))
        self.assertTrue(protos, SOURCE_DIR)
        for path in protos:
            with open(path) as f:
                for m in re.finditer(
                        r"^\s*(?:repeated\s+|optional\s+)?(?:u?int64|sint64|s?fixed64)\s+(\w+)"
                        r"\s*=\s*\d+", f.read(), re.M):
                    names.add(m.group(1))
        self.assertEqual(set(INT64_FIELDS), names,
                         "regenerate bindings/python/rapport/_schema.py from the protos")


if __name__ == "__main__":
    unittest.main()
