"""The `rapport` command end to end: every subcommand, its errors and exit codes.

Usage: python3 cli_test.py PATH_TO_RAPPORT
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

RAPPORT = None


def run(*args, stdin=None):
    p = subprocess.run([RAPPORT, *args], input=stdin, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def event(eid, at, **payload):
    return json.dumps({"event_id": eid, "occurred_at_us": str(at), **payload})


T0 = 1735689600000000  # 2025-01-01
DAY = 86400 * 1000000


class Commands(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = os.path.join(self.tmp.name, "engine")

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, lines):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def company(self):
        return [
            event("t1", T0, team_upserted={"team_id": "t1", "segments": ["retail"]}),
            event("m1", T0, manager_upserted={"manager_id": "m1", "team_id": "t1"}),
            event("c1", T0, account_upserted={"account_id": "c1", "kind": "ACCOUNT_KIND_CLIENT",
                                               "owner_id": "m1"}),
            event("l1", T0 + DAY, lead_created={"deal_id": "d1", "account_id": "c1"}),
            event("o1", T0 + 2 * DAY, order_placed={"order_id": "o1", "account_id": "c1",
                                                    "amount": {"amount_minor": "12345", "currency": "RUB"}}),
            event("p1", T0 + 3 * DAY, payment_received={"account_id": "c1",
                                                        "amount": {"amount_minor": "12345", "currency": "RUB"}}),
        ]

    def test_help_on_every_command(self):
        for cmd in ["demo", "ingest", "kpi", "actions", "grades", "export", "rules"]:
            code, out, _ = run(cmd, "--help")
            self.assertEqual(code, 0, cmd)
            self.assertIn("usage: rapport " + cmd, out)
        code, out, _ = run("--help")
        self.assertEqual(code, 0)
        self.assertIn("exit codes", out)
        self.assertEqual(run()[0], 2)
        code, _, err = run("nope")
        self.assertEqual(code, 2)
        self.assertIn("unknown command 'nope'", err)

    def test_ingest_then_kpi_in_every_format(self):
        path = self.write("events.jsonl", self.company())
        code, out, err = run("ingest", "--dir", self.dir, path)
        self.assertEqual(code, 0, err)
        self.assertIn("accepted 6, duplicates 0, rejected 0", out)
        # Again: every event is a duplicate, nothing changes.
        code, out, _ = run("ingest", "--dir", self.dir, path)
        self.assertEqual(code, 0)
        self.assertIn("accepted 0, duplicates 6", out)

        code, out, err = run("kpi", "--dir", self.dir, "--from", "2025-01-01", "--to", "2025-02-01",
                             "--format", "json")
        self.assertEqual(code, 0, err)
        report = json.loads(out)
        values = report["rows"][0]["values"]
        self.assertEqual(int(values["leads"]), 1)
        self.assertEqual(int(values["clients_new"]), 1)
        self.assertEqual(values["revenue"][0]["currency"], "RUB")
        self.assertEqual(int(values["revenue"][0]["amount_minor"]), 12345)

        code, out, _ = run("kpi", "--dir", self.dir, "--from", "2025-01-01", "--to", "2025-03-01",
                           "--bucket", "month", "--by", "manager", "--format", "csv")
        self.assertEqual(code, 0)
        lines = out.strip().split("\n")
        header = lines[0].split(",")
        self.assertEqual(header[:2], ["bucket", "group"])
        row = dict(zip(header, lines[1].split(",")))
        self.assertEqual(row["group"], "m1")
        self.assertEqual(row["leads"], "1")
        self.assertEqual(row["revenue.RUB.amount_minor"], "12345")

        code, out, _ = run("kpi", "--dir", self.dir, "--from", "2025-01-01", "--to", "2025-02-01",
                           "--tz", "Europe/Moscow")
        self.assertEqual(code, 0)
        self.assertIn("lead_conversion", out.split("\n")[0])

        code, _, err = run("kpi", "--dir", self.dir, "--from", "2025-02-01", "--to", "2025-01-01")
        self.assertEqual(code, 1)
        self.assertIn("start", err)
        code, _, err = run("kpi", "--dir", self.dir, "--from", "yesterday", "--to", "2025-01-01")
        self.assertEqual(code, 2)
        self.assertIn("--from", err)
        code, _, err = run("kpi", "--dir", self.dir, "--from", "2025-01-01", "--to", "2025-02-01",
                           "--tz", "Mars/Olympus")
        self.assertEqual(code, 1)
        self.assertIn("Mars/Olympus", err)

    def test_best_effort_names_file_line_and_field(self):
        lines = self.company()
        lines.insert(3, event("bad1", T0, feedback_received={"account_id": "c1", "score": 42}))
        lines.insert(5, "{not json")
        path = self.write("mixed.jsonl", lines)
        code, out, err = run("ingest", "--dir", self.dir, "--best-effort", path)
        self.assertEqual(code, 3, err)
        self.assertIn("accepted 6", out)
        self.assertIn("mixed.jsonl:4: event 'bad1'", err)
        self.assertIn("feedback_received.score", err)
        self.assertIn("mixed.jsonl:6:", err)
        # Atomic (default): the bad line stops the run and is named.
        other = os.path.join(self.tmp.name, "other")
        code, _, err = run("ingest", "--dir", other, path)
        self.assertEqual(code, 1)
        self.assertIn("mixed.jsonl:", err)

    def test_actions_grades_export_rules(self):
        path = self.write("events.jsonl", self.company())
        self.assertEqual(run("ingest", "--dir", self.dir, path)[0], 0)
        # An order without outbound contact for 7 days: C3's check_in task.
        code, out, err = run("actions", "--dir", self.dir, "--advance-to", "2025-01-20")
        self.assertEqual(code, 0, err)
        self.assertIn("check_in", out)
        action_id = [l.split()[0] for l in out.split("\n")[1:] if "check_in" in l][0]
        code, out, err = run("actions", "--dir", self.dir, "--ack", action_id)
        self.assertEqual(code, 0, err)
        self.assertNotIn(action_id, out)
        code, out, err = run("actions", "--dir", self.dir)
        self.assertEqual(code, 0, err)
        self.assertNotIn(action_id, out, "the acknowledgement outlives the process")
        code, _, err = run("actions", "--dir", self.dir, "--ack", "no-such-action")
        self.assertEqual(code, 1)
        self.assertIn("no-such-action", err)

        code, out, err = run("grades", "--dir", self.dir, "--format", "json")
        self.assertEqual(code, 0, err)
        grades = json.loads(out)
        self.assertEqual(grades["managers"][0]["manager_id"], "m1")

        snap_json = os.path.join(self.tmp.name, "snap.json")
        code, _, err = run("export", "--dir", self.dir, "--format", "json", "--out", snap_json)
        self.assertEqual(code, 0, err)
        with open(snap_json) as f:
            snap = json.load(f)
        self.assertEqual(int(snap["events_accepted"]), 6)
        raw = subprocess.run([RAPPORT, "export", "--dir", self.dir], capture_output=True, timeout=60)
        self.assertEqual(raw.returncode, 0)
        self.assertGreater(len(raw.stdout), 100)  # protobuf bytes on stdout

        good = self.write("rules.textproto", [
            'id: "mine" version: 2 effective_at_us: 1735689600000000',
            'rules { id: "X1" trigger { on_event { filter { type: EVENT_TYPE_ORDER_PLACED } } }',
            '        actions { kind: ACTION_KIND_CREATE_TASK assignee: ASSIGNEE_OWNER template: "thank_you" } }',
        ])
        code, out, err = run("rules", "check", good)
        self.assertEqual(code, 0, err)
        self.assertIn("ok: rule set 'mine' version 2, 1 rules", out)
        bad = self.write("bad.textproto", [
            'id: "mine" version: 1',
            'rules { id: "X1" trigger { stage_entered { pipeline_id: "client" stage: "nowhere" } }',
            '        actions { kind: ACTION_KIND_NOTIFY assignee: ASSIGNEE_OWNER template: "t" } }',
        ])
        code, _, err = run("rules", "check", bad)
        self.assertEqual(code, 1)
        self.assertIn("bad.textproto", err)
        self.assertIn("X1", err)
        self.assertIn("nowhere", err)

    def test_a_second_writer_is_kept_out(self):
        self.assertEqual(run("ingest", "--dir", self.dir, self.write("e.jsonl", self.company()))[0], 0)

        def hold():
            return subprocess.Popen([RAPPORT, "ingest", "--dir", self.dir, "-"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)

        holder = hold()
        try:
            # Wait until the holder has the lock. A probe can win the race and
            # keep the starting holder out (it exits with the same error the
            # test expects of the probe): then it starts again.
            for _ in range(400):
                if holder.poll() is not None:
                    holder = hold()
                code, _, err = run("grades", "--dir", self.dir)
                if code != 0:
                    break
                time.sleep(0.05)
            self.assertEqual(code, 1)
            self.assertIn(self.dir, err)
        finally:
            holder.communicate("", timeout=30)


if __name__ == "__main__":
    RAPPORT = sys.argv.pop(1)
    unittest.main()
