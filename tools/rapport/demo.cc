// `rapport demo`: a year of a company through a persistent engine, day by day,
// then the dashboard on the terminal and in DIR/dashboard.html.
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rapport/engine.h"
#include "rapport/testing/generator.h"
#include "tools/rapport/commands.h"
#include "tools/rapport/dashboard.h"
#include "tools/rapport/flags.h"

namespace rapport::cli {
namespace {

constexpr char kDemoHelp[] =
    "usage: rapport demo [--dir DIR] [--days N] [--seed S] [--leads-per-day L]\n"
    "\n"
    "Generates N days (default 365) of a company with three niche teams, partners that\n"
    "bring leads, clients with repeat orders and referrals; ingests it day by day into\n"
    "the persistent engine in DIR (default ./rapport-demo), advancing the clock every\n"
    "night so the regulations fire; then prints the dashboard and writes\n"
    "DIR/dashboard.html. Running it again on the same DIR is safe: repeated events are\n"
    "no-ops.\n";

constexpr int64_t kDay = kMicrosPerDay;

std::string Pct(const v1::Ratio& r) {
  return r.has_value() ? absl::StrFormat("%.1f %%", r.value() * 100) : "n/a";
}

std::string Change(double now, double before, bool* good) {
  if (before == 0) return "";
  const double c = (now - before) / before * 100;
  *good = c >= 0;
  return absl::StrFormat("%+.1f %% vs previous month", c);
}

std::string MonthLabel(int64_t us) {
  return absl::FormatTime("%Y-%m", absl::FromUnixMicros(us), absl::UTCTimeZone());
}

// "Jan", with the year on January: short enough for twelve bars.
std::string ShortMonth(int64_t us) {
  const absl::Time t = absl::FromUnixMicros(us);
  const std::string m = absl::FormatTime("%b", t, absl::UTCTimeZone());
  return m == "Jan" ? absl::FormatTime("%b %Y", t, absl::UTCTimeZone()) : m;
}

// 114375299 -> "114 375 299": amounts people read at a glance.
std::string Grouped(int64_t v) {
  std::string digits = absl::StrCat(v < 0 ? -v : v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ' ';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

std::string Kind(v1::ActionKind k) {
  return absl::AsciiStrToLower(v1::ActionKind_Name(k).substr(12));
}

int64_t RevenueOf(const v1::KpiValues& v, const std::string& currency) {
  for (const auto& r : v.revenue()) {
    if (r.currency() == currency) return r.amount_minor();
  }
  return 0;
}

}  // namespace

int Demo(const std::vector<std::string>& args) {
  absl::StatusOr<Flags> flags =
      Flags::Parse(args, {"dir", "days", "seed", "leads-per-day"}, {"help"});
  if (!flags.ok()) {
    std::fprintf(stderr, "rapport: %s\n\n%s", std::string(flags.status().message()).c_str(),
                 kDemoHelp);
    return kExitUsage;
  }
  if (flags->Has("help")) {
    std::fputs(kDemoHelp, stdout);
    return kExitOk;
  }
  auto days = flags->GetInt("days", 365);
  auto seed = flags->GetInt("seed", 1);
  auto lpd = flags->GetInt("leads-per-day", 12);
  if (!days.ok() || !seed.ok() || !lpd.ok() || *days < 30 || *days > 3650 || *lpd < 1 ||
      *lpd > 10000) {
    std::fprintf(
        stderr,
        "rapport: --days must be 30..3650, --leads-per-day 1..10000, --seed an integer\n\n%s",
        kDemoHelp);
    return kExitUsage;
  }
  const std::string dir = flags->Get("dir", "rapport-demo");
  ::mkdir(dir.c_str(), 0755);

  testing::GeneratorOptions o;
  o.seed = static_cast<uint64_t>(*seed);
  o.max_events = 0;
  o.end_us = o.start_us + *days * kDay;
  o.leads_per_day = static_cast<double>(*lpd);
  o.teams = 3;
  const absl::Time t0 = absl::Now();
  const std::vector<v1::Event> events = testing::GenerateStream(o);

  auto opened = Engine::Open(dir);
  if (!opened.ok()) {
    std::fprintf(stderr, "rapport: %s: %s\n", dir.c_str(),
                 std::string(opened.status().message()).c_str());
    return kExitFailure;
  }
  Engine& engine = **opened;

  // Day by day: the events that arrive during the day, then the night's
  // clock tick, when the regulations' timers fire.
  size_t next = 0;
  int64_t fired = 0, produced = 0;
  v1::ActionList today;
  int64_t high = 0;
  for (int64_t day = 0; day < *days; ++day) {
    const int64_t day_end = o.start_us + (day + 1) * kDay;
    std::vector<v1::Event> batch;
    while (next < events.size() && std::max(high, events[next].occurred_at_us()) < day_end) {
      high = std::max(high, events[next].occurred_at_us());
      batch.push_back(events[next++]);
    }
    if (!batch.empty()) {
      auto r = engine.IngestBatch(batch);
      if (!r.ok()) {
        std::fprintf(stderr, "rapport: day %lld: %s\n", static_cast<long long>(day),
                     std::string(r.status().message()).c_str());
        return kExitFailure;
      }
      produced += r->actions_size();
    }
    auto a = engine.Advance(day_end);
    if (!a.ok()) {
      std::fprintf(stderr, "rapport: advance: %s\n", std::string(a.status().message()).c_str());
      return kExitFailure;
    }
    fired += a->actions_size();
    if (day == *days - 1) today = *a;
  }
  const int64_t end = o.start_us + *days * kDay;
  const absl::Time t1 = absl::Now();

  // The last twelve months (or the whole run) by month.
  v1::KpiQuery q;
  q.set_start_us(std::max(o.start_us, end - 365 * kDay));
  q.set_end_us(end);
  q.set_bucket(v1::BUCKET_MONTH);
  auto monthly = engine.Kpis(q);
  v1::KpiQuery whole = q;
  whole.set_bucket(v1::BUCKET_NONE);
  whole.set_start_us(o.start_us);
  auto total = engine.Kpis(whole);
  auto grades = engine.Grades(end);
  if (!monthly.ok() || !total.ok() || !grades.ok()) {
    const absl::Status st = !monthly.ok() ? monthly.status()
                            : !total.ok() ? total.status()
                                          : grades.status();
    std::fprintf(stderr, "rapport: %s\n", std::string(st.message()).c_str());
    return kExitFailure;
  }
  const auto stuck = engine.StuckDeals(end);
  const auto& rows = monthly->rows();
  const v1::KpiValues& last = rows[rows.size() - 1].values();
  const v1::KpiValues* prev = rows.size() >= 2 ? &rows[rows.size() - 2].values() : nullptr;
  const v1::KpiValues& all = total->rows(0).values();

  DashboardData d;
  d.title = "Rapport — account management dashboard";
  d.subtitle = absl::StrFormat("Generated company, %s .. %s; figures for %s unless noted",
                               FormatDate(o.start_us), FormatDate(end - 1),
                               MonthLabel(rows[rows.size() - 1].bucket_start_us()));
  auto tile = [&](const std::string& key, const std::string& label, const std::string& value,
                  double now, double before) {
    Tile t{key, label, value, "", true};
    t.change = Change(now, before, &t.change_is_good);
    d.tiles.push_back(std::move(t));
  };
  tile("partners_active", "Active partners", absl::StrCat(last.partners_active_end()),
       static_cast<double>(last.partners_active_end()),
       prev ? static_cast<double>(prev->partners_active_end()) : 0);
  tile("partner_growth", "Partner growth", Pct(last.partner_growth()), 0, 0);
  tile("leads", "Leads", absl::StrCat(last.leads()), static_cast<double>(last.leads()),
       prev ? static_cast<double>(prev->leads()) : 0);
  tile("lead_conversion", "Lead conversion (run)", Pct(all.lead_conversion()), 0, 0);
  tile("clients_new", "New clients", absl::StrCat(last.clients_new()),
       static_cast<double>(last.clients_new()),
       prev ? static_cast<double>(prev->clients_new()) : 0);
  tile("repeat_order_share", "Repeat-order share", Pct(last.repeat_order_share()), 0, 0);
  tile("referral_rate", "Referral rate", Pct(last.referral_rate()), 0, 0);
  for (const auto& r : last.revenue()) {
    tile("revenue_" + r.currency(), "Revenue " + r.currency(), Grouped(r.amount_minor() / 100),
         static_cast<double>(r.amount_minor()), static_cast<double>(r.previous_minor()));
  }
  tile("nps", "NPS", last.has_nps() ? absl::StrFormat("%.0f", last.nps()) : "n/a", 0, 0);
  tile("stuck_deals", "Stuck deals", absl::StrCat(stuck.size()), 0, 0);

  Series partners{"partners_active", "Active partners at month end", "partners", {}};
  Series rub{"revenue_RUB", "Revenue by month, RUB", "RUB", {}};
  Series usd{"revenue_USD", "Revenue by month, USD", "USD", {}};
  for (const auto& row : rows) {
    const std::string m = ShortMonth(row.bucket_start_us());
    partners.points.push_back({m, static_cast<double>(row.values().partners_active_end())});
    rub.points.push_back({m, static_cast<double>(RevenueOf(row.values(), "RUB")) / 100.0});
    usd.points.push_back({m, static_cast<double>(RevenueOf(row.values(), "USD")) / 100.0});
  }
  d.charts = {partners, rub, usd};

  d.funnel_title = "Client funnel through post-sale care (whole run): deals entering each stage";
  for (const auto& sc : all.stage_conversion()) {
    if (sc.pipeline_id() != "client") continue;
    FunnelStage f{sc.stage(), static_cast<long long>(sc.conversion().denominator()), std::nullopt};
    if (sc.conversion().has_value()) f.conversion = sc.conversion().value();
    d.funnel.push_back(f);
  }

  Table stuck_t{"stuck",
                "Stuck deals",
                {"deal", "account", "stage", "days in stage", "SLA days"},
                {},
                "none"};
  for (size_t i = 0; i < stuck.size() && i < 25; ++i) {
    const auto& s = stuck[i];
    stuck_t.rows.push_back({{s.deal_id(), s.account_id(), s.stage(),
                             absl::StrFormat("%.1f", static_cast<double>(s.dwell_us()) / kDay),
                             absl::StrFormat("%.0f", static_cast<double>(s.sla_us()) / kDay)}});
  }
  Table managers{
      "managers",
      "Managers",
      {"manager", "grade", "eligible", "bonus", "accounts", "hunter share", "unmet requirements"},
      {},
      "none"};
  for (const auto& m : grades->managers()) {
    std::string unmet;
    for (const auto& u : m.unmet()) {
      absl::StrAppend(&unmet, unmet.empty() ? "" : "; ", u.grade(), ": ",
                      absl::AsciiStrToLower(v1::GradeMetric_Name(u.metric()).substr(13)), " ",
                      u.has_actual() ? absl::StrFormat("%.3g", u.actual()) : "n/a", " < ",
                      absl::StrFormat("%.3g", u.required()));
    }
    managers.rows.push_back(
        {{m.manager_id(), m.current_grade(), m.eligible_grade(),
          absl::StrFormat("%.2f", m.bonus_multiplier()), absl::StrCat(m.accounts_owned()),
          m.has_hunter_share() ? absl::StrFormat("%.0f %%%s", m.hunter_share() * 100,
                                                 m.hunter_drift() ? " (drift)" : "")
                               : "n/a",
          unmet}});
  }
  Table violations{"violations",
                   "Assignment violations",
                   {"kind", "manager", "account", "tier", "suggested owner"},
                   {},
                   "none"};
  for (int i = 0; i < grades->violations_size() && i < 25; ++i) {
    const auto& v = grades->violations(i);
    violations.rows.push_back(
        {{v.kind() == v1::Violation::KIND_TIER_ABOVE_GRADE ? "tier above grade"
                                                           : "over account limit",
          v.manager_id(), v.account_id(),
          v.tier() == v1::TIER_UNSPECIFIED ? "" : v1::Tier_Name(v.tier()).substr(5),
          v.suggested_owner_id().empty() ? "none" : v.suggested_owner_id()}});
  }
  Table actions{"actions",
                "Today's actions",
                {"kind", "rule", "assignee", "account", "due", "template"},
                {},
                "none today"};
  for (const auto& a : today.actions()) {
    actions.rows.push_back({{Kind(a.kind()), a.rule_id(), a.assignee_id(), a.account_id(),
                             FormatInstant(a.due_at_us()), a.template_()}});
  }
  d.tables = {stuck_t, actions, managers, violations};

  const std::string html_path = dir + "/dashboard.html";
  {
    std::ofstream html(html_path, std::ios::binary);
    html << RenderDashboard(d);
    if (!html.good()) {
      std::fprintf(stderr, "rapport: %s: cannot write\n", html_path.c_str());
      return kExitFailure;
    }
  }

  // The terminal dashboard.
  std::printf("Rapport demo: %zu events over %lld days in %s (%.1f s), %lld actions produced\n\n",
              events.size(), static_cast<long long>(*days), dir.c_str(),
              absl::ToDoubleSeconds(t1 - t0), static_cast<long long>(produced + fired));
  std::printf("%s\n", d.subtitle.c_str());
  for (const Tile& t : d.tiles) {
    std::printf("  %-24s %14s  %s\n", t.label.c_str(), t.value.c_str(), t.change.c_str());
  }
  std::printf("\nMonth      active partners    revenue RUB   revenue USD\n");
  for (int i = 0; i < rows.size(); ++i) {
    std::printf("%-10s %15.0f %14s %13s\n", MonthLabel(rows[i].bucket_start_us()).c_str(),
                partners.points[i].value,
                Grouped(static_cast<int64_t>(rub.points[i].value)).c_str(),
                Grouped(static_cast<int64_t>(usd.points[i].value)).c_str());
  }
  std::printf("\nClient funnel (whole run)\n");
  for (const FunnelStage& f : d.funnel) {
    std::printf(
        "  %-12s %7lld entered  %s\n", f.stage.c_str(), f.entered,
        f.conversion ? absl::StrFormat("%5.1f %% moved on", *f.conversion * 100).c_str() : "");
  }
  std::printf("\nStuck deals: %zu    Today's actions: %d    Violations: %d\n", stuck.size(),
              today.actions_size(), grades->violations_size());
  for (int i = 0; i < today.actions_size() && i < 8; ++i) {
    const auto& a = today.actions(i);
    std::printf("  %-12s %-4s %-10s %-12s %s\n", Kind(a.kind()).c_str(), a.rule_id().c_str(),
                a.assignee_id().c_str(), a.account_id().c_str(), a.template_().c_str());
  }
  std::printf("\nManagers\n  %-8s %-8s %-8s %8s %7s\n", "manager", "grade", "eligible", "accounts",
              "hunter");
  for (const auto& m : grades->managers()) {
    std::printf("  %-8s %-8s %-8s %8lld %7s\n", m.manager_id().c_str(), m.current_grade().c_str(),
                m.eligible_grade().c_str(), static_cast<long long>(m.accounts_owned()),
                m.has_hunter_share() ? absl::StrFormat("%.0f%%%s", m.hunter_share() * 100,
                                                       m.hunter_drift() ? "!" : "")
                                           .c_str()
                                     : "-");
  }
  std::printf("\nDashboard written to %s\n", html_path.c_str());
  return kExitOk;
}

}  // namespace rapport::cli
