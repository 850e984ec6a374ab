// A self-contained HTML dashboard: no network, no script, inline SVG charts.
// The command fills DashboardData from the engine; rendering is a pure
// function, so it is tested on its own and in a headless browser.
#ifndef RAPPORT_TOOLS_RAPPORT_DASHBOARD_H_
#define RAPPORT_TOOLS_RAPPORT_DASHBOARD_H_

#include <optional>
#include <string>
#include <vector>

namespace rapport::cli {

struct Tile {
  std::string key;  // stable id, rendered as data-kpi for tests
  std::string label;
  std::string value;   // formatted for people
  std::string change;  // e.g. "+12.5 % vs previous period"; empty if none
  bool change_is_good = true;
};

struct Point {
  std::string label;  // e.g. "2025-03"
  double value = 0;
};

struct Series {
  std::string key;
  std::string title;
  std::string unit;
  std::vector<Point> points;
};

struct FunnelStage {
  std::string stage;
  long long entered = 0;
  // Share of those that moved on to a later stage; nullopt when none entered.
  std::optional<double> conversion;
};

struct Row {
  std::vector<std::string> cells;
};

struct Table {
  std::string key;
  std::string title;
  std::vector<std::string> header;
  std::vector<Row> rows;
  std::string empty_text = "none";
};

struct DashboardData {
  std::string title;
  std::string subtitle;
  std::vector<Tile> tiles;
  std::vector<Series> charts;
  std::string funnel_title;
  std::vector<FunnelStage> funnel;
  std::vector<Table> tables;
};

// HTML-escapes text.
std::string Escape(const std::string& text);

std::string RenderDashboard(const DashboardData& data);

}  // namespace rapport::cli

#endif  // RAPPORT_TOOLS_RAPPORT_DASHBOARD_H_
