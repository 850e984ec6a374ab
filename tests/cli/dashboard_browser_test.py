"""dashboard.html renders in headless Chromium and shows the numbers the engine reports.

Runs `rapport demo` on a short run, loads DIR/dashboard.html in Debian's
chromium (installed by scripts/setup), reads the rendered DOM, and checks the
KPI tiles against `rapport kpi --format json` over the same month, the charts
against the monthly report, and the tables against `rapport grades`.

Usage: python3 dashboard_browser_test.py PATH_TO_RAPPORT
"""
import html.parser
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

RAPPORT = None
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Dom(html.parser.HTMLParser):
    """Collects tiles (data-kpi -> value text), chart bars and table rows."""

    def __init__(self):
        super().__init__()
        self.tiles, self.bars, self.tables = {}, {}, {}
        self._tile = self._field = self._chart = self._table = None
        self._row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-kpi" in a:
            self._tile = a["data-kpi"]
        if tag == "div" and a.get("class") == "value" and self._tile:
            self._field = "value"
        if "data-chart" in a:
            self._chart = a["data-chart"]
            self.bars[self._chart] = []
        if tag == "rect" and self._chart and "data-value" in a:
            self.bars[self._chart].append(a["data-value"])
        if "data-table" in a:
            self._table = a["data-table"]
            self.tables[self._table] = []
        if tag == "tr" and self._table:
            self._row = []
        if tag == "td" and self._row is not None:
            self._field = "td"
            self._row.append("")

    def handle_endtag(self, tag):
        if tag == "svg":
            self._chart = None
        if tag == "tr" and self._row is not None:
            if self._row:
                self.tables[self._table].append(self._row)
            self._row = None
        if tag == "section":
            self._table = None
        if tag in ("div", "td"):
            if self._field == "value":
                self._tile = None
            self._field = None

    def handle_data(self, data):
        if self._field == "value" and self._tile:
            self.tiles[self._tile] = self.tiles.get(self._tile, "") + data
        elif self._field == "td" and self._row is not None:
            self._row[-1] += data


def rapport(*args):
    p = subprocess.run([RAPPORT, *args], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise AssertionError(f"rapport {' '.join(args)} failed: {p.stderr}")
    return p.stdout


class DashboardInBrowser(unittest.TestCase):
    def test_renders_and_shows_the_engines_numbers(self):
        chromium = shutil.which("chromium")
        self.assertIsNotNone(chromium, "chromium is missing: run scripts/setup")
        with tempfile.TemporaryDirectory() as tmp:
            d = os.path.join(tmp, "demo")
            rapport("demo", "--dir", d, "--days", "90")
            page = os.path.join(d, "dashboard.html")
            p = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile",
                                "--dump-dom", "file://" + page],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr[-2000:])
            dom = Dom()
            dom.feed(p.stdout)

            # 90 days from 2025-01-01: the last month shown is March 2025.
            report = json.loads(rapport("kpi", "--dir", d, "--from", "2025-01-01", "--to", "2025-04-01",
                                        "--bucket", "month", "--format", "json"))
            march = report["rows"][-1]["values"]
            self.assertEqual(dom.tiles["leads"].strip(), str(int(march.get("leads", 0))))
            self.assertEqual(dom.tiles["partners_active"].strip(),
                             str(int(march.get("partners_active_end", 0))))
            self.assertEqual(dom.tiles["clients_new"].strip(), str(int(march.get("clients_new", 0))))
            rub = [r for r in march["revenue"] if r["currency"] == "RUB"][0]
            self.assertEqual(dom.tiles["revenue_RUB"].replace(" ", "").strip(),
                             str(int(rub["amount_minor"]) // 100))

            # The partner chart has one bar per month with the engine's figures.
            bars = dom.bars["partners_active"]
            self.assertEqual(bars, [str(int(r["values"].get("partners_active_end", 0)))
                                    for r in report["rows"]])

            # Managers table: one row per manager, with the engine's grades.
            grades = json.loads(rapport("grades", "--dir", d, "--as-of", "2025-04-01", "--format", "json"))
            rows = dom.tables["managers"]
            self.assertEqual(len(rows), len(grades["managers"]))
            for row, g in zip(rows, grades["managers"]):
                self.assertEqual(row[0], g["manager_id"])
                self.assertEqual(row[2], g.get("eligible_grade", ""))

            # The screenshot renders (a non-trivial PNG).
            shot = os.path.join(tmp, "dash.png")
            subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile2",
                            f"--screenshot={shot}", "--window-size=1280,2000", "file://" + page],
                           capture_output=True, timeout=120)
            self.assertGreater(os.path.getsize(shot), 20000)


if __name__ == "__main__":
    RAPPORT = sys.argv.pop(1)
    unittest.main()
