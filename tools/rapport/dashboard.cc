#include "tools/rapport/dashboard.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rapport::cli {
namespace {

constexpr char kStyle[] = R"css(
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2a44;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;opacity:.8}
main{padding:20px 28px;display:grid;gap:20px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px}
.tile{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.tile .label{font-size:12px;color:#5b6475;text-transform:uppercase;letter-spacing:.03em}
.tile .value{font-size:24px;font-weight:600;margin-top:4px}
.tile .change{font-size:12px;margin-top:2px}.good{color:#1a7f37}.bad{color:#c62828}
section{background:#fff;border-radius:8px;padding:14px 18px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
section h2{margin:0 0 10px;font-size:16px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:20px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6e8ec}th{color:#5b6475;font-weight:600}
.funnel .bar{fill:#3b6fd8}.chart .bar{fill:#3b6fd8}.chart text,.funnel text{font-size:11px;fill:#3d4555}
.empty{color:#8a92a3}
)css";

std::string Fmt(double v) {
  if (std::fabs(v) >= 1e6) return absl::StrFormat("%.1fM", v / 1e6);
  if (std::fabs(v) >= 1e4) return absl::StrFormat("%.0fk", v / 1e3);
  if (v == std::floor(v)) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.2f", v);
}

// A bar chart; bars scale to the largest value.
std::string BarChart(const Series& s) {
  const int width = 560, height = 220, left = 48, bottom = 36, top = 14;
  std::string svg = absl::StrFormat(
      "<svg class=\"chart\" data-chart=\"%s\" viewBox=\"0 0 %d %d\" width=\"100%%\" role=\"img\" "
      "aria-label=\"%s\">",
      Escape(s.key), width, height, Escape(s.title));
  double max = 0;
  for (const Point& p : s.points) max = std::max(max, p.value);
  if (s.points.empty() || max <= 0) {
    absl::StrAppend(&svg, "<text x=\"", left, "\" y=\"", height / 2, "\">no data</text></svg>");
    return svg;
  }
  const double plot_h = height - bottom - top;
  const double slot = static_cast<double>(width - left - 8) / static_cast<double>(s.points.size());
  absl::StrAppend(
      &svg, absl::StrFormat("<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#c9ced8\"/>",
                            left, height - bottom, width - 4, height - bottom));
  absl::StrAppend(&svg,
                  absl::StrFormat("<text x=\"4\" y=\"%d\">%s</text>", top + 4, Escape(Fmt(max))));
  for (size_t i = 0; i < s.points.size(); ++i) {
    const Point& p = s.points[i];
    const double h = plot_h * std::max(0.0, p.value) / max;
    const double x = left + slot * static_cast<double>(i) + slot * 0.15;
    absl::StrAppend(&svg,
                    absl::StrFormat("<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                                    "height=\"%.1f\" data-value=\"%s\">"
                                    "<title>%s: %s %s</title></rect>",
                                    x, height - bottom - h, slot * 0.7, h, Escape(Fmt(p.value)),
                                    Escape(p.label), Escape(Fmt(p.value)), Escape(s.unit)));
    if (s.points.size() <= 12 || i % 2 == 0) {
      absl::StrAppend(&svg,
                      absl::StrFormat("<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>",
                                      x + slot * 0.35, height - bottom + 14, Escape(p.label)));
    }
  }
  absl::StrAppend(&svg, "</svg>");
  return svg;
}

std::string Funnel(const std::vector<FunnelStage>& stages) {
  const int row = 22, width = 1100, label_w = 110;
  const int height = row * static_cast<int>(stages.size()) + 8;
  std::string svg = absl::StrFormat(
      "<svg class=\"funnel\" viewBox=\"0 0 %d %d\" width=\"100%%\" role=\"img\" "
      "aria-label=\"client funnel\">",
      width, height);
  long long max = 1;
  for (const FunnelStage& s : stages) max = std::max(max, s.entered);
  for (size_t i = 0; i < stages.size(); ++i) {
    const FunnelStage& s = stages[i];
    const double w =
        (width - label_w - 230) * static_cast<double>(s.entered) / static_cast<double>(max);
    const int y = static_cast<int>(i) * row + 4;
    std::string conv = s.conversion ? absl::StrFormat("%.1f %% move on", *s.conversion * 100) : "—";
    absl::StrAppend(
        &svg,
        absl::StrFormat(
            "<text x=\"0\" y=\"%d\">%s</text><rect class=\"bar\" x=\"%d\" y=\"%d\" width=\"%.1f\" "
            "height=\"%d\" data-stage=\"%s\" data-value=\"%lld\"/><text x=\"%.1f\" y=\"%d\">%lld · "
            "%s</text>",
            y + 15, Escape(s.stage), label_w, y, std::max(1.0, w), row - 8, Escape(s.stage),
            s.entered, label_w + std::max(1.0, w) + 6, y + 15, s.entered, Escape(conv)));
  }
  absl::StrAppend(&svg, "</svg>");
  return svg;
}

std::string RenderTable(const Table& t) {
  std::string html =
      absl::StrCat("<section data-table=\"", Escape(t.key), "\"><h2>", Escape(t.title),
                   " <small class=\"empty\">(", t.rows.size(), ")</small></h2>");
  if (t.rows.empty())
    return absl::StrCat(html, "<p class=\"empty\">", Escape(t.empty_text), "</p></section>");
  absl::StrAppend(&html, "<table><thead><tr>");
  for (const std::string& h : t.header) absl::StrAppend(&html, "<th>", Escape(h), "</th>");
  absl::StrAppend(&html, "</tr></thead><tbody>");
  for (const Row& r : t.rows) {
    absl::StrAppend(&html, "<tr>");
    for (const std::string& c : r.cells) absl::StrAppend(&html, "<td>", Escape(c), "</td>");
    absl::StrAppend(&html, "</tr>");
  }
  return absl::StrCat(html, "</tbody></table></section>");
}

}  // namespace

std::string Escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string RenderDashboard(const DashboardData& d) {
  std::string html = absl::StrCat(
      "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
      "<title>",
      Escape(d.title), "</title><style>", kStyle, "</style></head><body><header><h1>",
      Escape(d.title), "</h1><p>", Escape(d.subtitle), "</p></header><main><div class=\"tiles\">");
  for (const Tile& t : d.tiles) {
    absl::StrAppend(&html, "<div class=\"tile\" data-kpi=\"", Escape(t.key),
                    "\"><div class=\"label\">", Escape(t.label), "</div><div class=\"value\">",
                    Escape(t.value), "</div>");
    if (!t.change.empty()) {
      absl::StrAppend(&html, "<div class=\"change ", t.change_is_good ? "good" : "bad", "\">",
                      Escape(t.change), "</div>");
    }
    absl::StrAppend(&html, "</div>");
  }
  absl::StrAppend(&html, "</div><div class=\"charts\">");
  for (const Series& s : d.charts) {
    absl::StrAppend(&html, "<section><h2>", Escape(s.title), "</h2>", BarChart(s), "</section>");
  }
  absl::StrAppend(&html, "</div>");
  if (!d.funnel.empty()) {
    absl::StrAppend(&html, "<section><h2>", Escape(d.funnel_title), "</h2>", Funnel(d.funnel),
                    "</section>");
  }
  for (const Table& t : d.tables) absl::StrAppend(&html, RenderTable(t));
  absl::StrAppend(&html, "</main></body></html>\n");
  return html;
}

}  // namespace rapport::cli
