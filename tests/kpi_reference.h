// A deliberately naive KPI implementation for tests, written from SPEC §5
// (and the interpretations documented in proto/rapport/v1/kpi.proto) alone:
// it keeps the accepted events in a list and answers each figure by looping
// over all of them, with strings and std::map throughout. Slow on purpose;
// nothing is shared with lib/kpi.
#ifndef RAPPORT_TESTS_KPI_REFERENCE_H_
#define RAPPORT_TESTS_KPI_REFERENCE_H_

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "rapport/engine.h"

namespace rapport::test {

class ReferenceKpis {
 public:
  // `events` are the accepted events in arrival order (index = arrival seq).
  ReferenceKpis(std::vector<v1::Event> events, const v1::EngineConfig& config)
      : ev_(std::move(events)), config_(config) {
    Replay();
  }

  v1::KpiReport Report(const v1::KpiQuery& query) const;

 private:
  static constexpr int64_t kDay = 86400LL * 1000000;
  static constexpr int64_t kInf = INT64_MAX;
  using St = std::pair<int64_t, int64_t>;  // (occurred_at, seq)

  struct Attr {
    St since;
    std::string owner, team, segment;
  };
  struct Account {
    v1::AccountKind kind = v1::ACCOUNT_KIND_UNSPECIFIED;
    std::vector<Attr> attr;  // sorted by since
    std::string referred_by, source_partner;
  };
  struct Deal {
    std::string account, pipeline, source_partner;
    int64_t created = 0;
    std::string stage;                         // current, by arrival
    std::vector<std::tuple<St, int>> entries;  // (stamp, stage index)
    std::vector<St> wins, losses;
  };
  struct Order {
    std::string account;
    St placed;
    int64_t completed = -1;
  };

  const v1::Pipeline& PipelineOf(const std::string& id) const {
    for (const auto& p : config_.pipelines().pipelines())
      if (p.id() == id) return p;
    return config_.pipelines().pipelines(0);
  }
  static int StageIdx(const v1::Pipeline& p, const std::string& s) {
    for (int i = 0; i < p.stages_size(); ++i)
      if (p.stages(i).id() == s) return i;
    return -1;
  }

  void Replay() {
    std::map<std::string, std::string> manager_team;
    std::vector<std::pair<std::string, std::vector<std::string>>> teams;
    for (size_t i = 0; i < ev_.size(); ++i) {
      const v1::Event& e = ev_[i];
      const int64_t t = e.occurred_at_us();
      const St st{t, static_cast<int64_t>(i)};
      if (e.has_manager_upserted())
        manager_team[e.manager_upserted().manager_id()] = e.manager_upserted().team_id();
      if (e.has_team_upserted()) {
        bool found = false;
        for (auto& [id, segs] : teams) {
          if (id == e.team_upserted().team_id()) {
            segs.assign(e.team_upserted().segments().begin(), e.team_upserted().segments().end());
            found = true;
          }
        }
        if (!found)
          teams.emplace_back(e.team_upserted().team_id(),
                             std::vector<std::string>(e.team_upserted().segments().begin(),
                                                      e.team_upserted().segments().end()));
      }
      if (e.has_account_upserted()) {
        const auto& p = e.account_upserted();
        Account& a = accounts_[p.account_id()];
        if (a.attr.empty()) a.kind = p.kind();
        std::string team = p.team_id();
        if (team.empty() && !p.owner_id().empty()) team = manager_team[p.owner_id()];
        if (team.empty() && !p.segment().empty()) {
          for (auto& [id, segs] : teams) {
            if (team.empty() && std::count(segs.begin(), segs.end(), p.segment())) team = id;
          }
        }
        if (team.empty()) {
          for (auto& [id, segs] : teams)
            if (id == config_.default_team_id()) team = id;
        }
        a.attr.push_back({st, p.owner_id(), team, p.segment()});
        std::sort(a.attr.begin(), a.attr.end(),
                  [](const Attr& x, const Attr& y) { return x.since < y.since; });
        a.referred_by = p.referred_by();
        a.source_partner = p.source_partner_id();
      }
      if (e.has_lead_created()) {
        const auto& p = e.lead_created();
        Deal& d = deals_[p.deal_id()];
        const Account& a = accounts_[p.account_id()];
        d.account = p.account_id();
        d.pipeline = !p.pipeline_id().empty()             ? p.pipeline_id()
                     : a.kind == v1::ACCOUNT_KIND_PARTNER ? "partner"
                                                          : "client";
        d.source_partner = p.source_partner_id().empty() ? a.source_partner : p.source_partner_id();
        d.created = t;
        Enter(d, 0, st);
      }
      if (e.has_deal_stage_changed()) {
        Deal& d = deals_[e.deal_stage_changed().deal_id()];
        if (d.stage != e.deal_stage_changed().to_stage()) {
          Enter(d, StageIdx(PipelineOf(d.pipeline), e.deal_stage_changed().to_stage()), st);
        }
      }
      if (e.has_deal_won()) {
        Deal& d = deals_[e.deal_won().deal_id()];
        d.wins.push_back(st);
        const v1::Pipeline& p = PipelineOf(d.pipeline);
        int won = -1;
        for (int k = 0; k < p.stages_size() && won < 0; ++k)
          if (p.stages(k).won()) won = k;
        if (won >= 0 && StageIdx(p, d.stage) < won) Enter(d, won, st);
      }
      if (e.has_deal_lost()) deals_[e.deal_lost().deal_id()].losses.push_back(st);
      if (e.has_order_placed()) {
        Order& o = orders_[e.order_placed().order_id()];
        o.account = e.order_placed().account_id();
        o.placed = st;
      }
      if (e.has_order_completed()) {
        Order& o = orders_[e.order_completed().order_id()];
        if (o.completed < 0) o.completed = t;
      }
    }
  }

  void Enter(Deal& d, int stage, St st) {
    const v1::Pipeline& p = PipelineOf(d.pipeline);
    d.stage = p.stages(stage).id();
    d.entries.emplace_back(st, stage);
    if (p.stages(stage).won()) d.wins.push_back(st);
    if (p.stages(stage).lost()) d.losses.push_back(st);
  }

  const Attr* AttrAt(const std::string& account, int64_t t) const {
    const Account& a = accounts_.at(account);
    const Attr* best = a.attr.empty() ? nullptr : &a.attr.front();
    for (const Attr& x : a.attr)
      if (x.since.first <= t) best = &x;
    return best;
  }

  std::string Group(const v1::KpiQuery& q, const std::string& account, int64_t t) const {
    const Attr* at = AttrAt(account, t);
    switch (q.group_by()) {
      case v1::GROUP_BY_MANAGER:
        return at ? at->owner : "";
      case v1::GROUP_BY_TEAM:
        return at ? at->team : "";
      case v1::GROUP_BY_SEGMENT:
        return at ? at->segment : "";
      case v1::GROUP_BY_SOURCE_PARTNER:
        return accounts_.at(account).source_partner;
      case v1::GROUP_BY_ACCOUNT_KIND: {
        auto k = accounts_.at(account).kind;
        return k == v1::ACCOUNT_KIND_CLIENT    ? "client"
               : k == v1::ACCOUNT_KIND_PARTNER ? "partner"
                                               : "";
      }
      default:
        return "";
    }
  }
  std::string DealGroup(const v1::KpiQuery& q, const Deal& d, int64_t t) const {
    return q.group_by() == v1::GROUP_BY_SOURCE_PARTNER ? d.source_partner : Group(q, d.account, t);
  }

  static St MinOf(const std::vector<St>& v) {
    St m{kInf, kInf};
    for (const St& x : v) m = std::min(m, x);
    return m;
  }

  // Every order of the account, as stamps.
  std::vector<St> OrdersOf(const std::string& account) const {
    std::vector<St> out;
    for (const auto& [id, o] : orders_)
      if (o.account == account) out.push_back(o.placed);
    std::sort(out.begin(), out.end());
    return out;
  }

  bool PartnerActive(const std::string& account, int64_t x) const {
    St best{-1, -1};
    bool agreed = false;
    for (size_t i = 0; i < ev_.size(); ++i) {
      const v1::Event& e = ev_[i];
      const St st{e.occurred_at_us(), static_cast<int64_t>(i)};
      if (st.first >= x) continue;
      if (e.has_partner_agreed() && e.partner_agreed().account_id() == account && st > best) {
        best = st;
        agreed = true;
      }
      if (e.has_partner_churned() && e.partner_churned().account_id() == account && st > best) {
        best = st;
        agreed = false;
      }
    }
    return agreed;
  }

  static std::vector<int64_t> Bounds(const v1::KpiQuery& q);

  const std::vector<v1::Event> ev_;
  v1::EngineConfig config_;
  std::map<std::string, Account> accounts_;
  std::map<std::string, Deal> deals_;
  std::map<std::string, Order> orders_;

  friend struct RefBuilder;
};

}  // namespace rapport::test

#include "kpi_reference_impl.h"

#endif  // RAPPORT_TESTS_KPI_REFERENCE_H_
