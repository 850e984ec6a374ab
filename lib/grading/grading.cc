#include "lib/grading/grading.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "rapport/engine.h"

namespace rapport {
namespace {

// Tier comparison: A (1) is the highest; UNSPECIFIED counts as C for an
// account and as "any tier" for a grade's limit.
bool Allows(v1::Tier max_tier, v1::Tier tier) {
  return max_tier == v1::TIER_UNSPECIFIED || tier >= max_tier;
}

struct ManagerView {
  const v1::Manager* manager;
  int grade;  // index into the policy
  int64_t accounts = 0;
};

// The suggested owner for a violation, from the two best candidates of each
// (team, tier) found in one pass: the owner is never its own suggestion, so
// the runner-up stands in when the owner is the best. One pass keeps a
// company of 10 000 managers with many violations linear.
class OwnerSuggestions {
 public:
  OwnerSuggestions(const std::vector<ManagerView>& managers, const v1::GradePolicy& policy) {
    for (const ManagerView& c : managers) {
      auto [it, inserted] = team_index_.try_emplace(c.manager->team_id(), teams_.size());
      if (inserted) teams_.emplace_back();
      const v1::Grade& g = policy.grades(c.grade);
      if (g.max_accounts() > 0 && c.accounts >= g.max_accounts()) continue;
      for (int t = v1::TIER_A; t <= v1::TIER_C; ++t) {
        if (Allows(g.max_tier(), static_cast<v1::Tier>(t))) Offer(teams_[it->second][t - 1], &c);
      }
    }
  }

  // `tier` is A, B or C; `owner` is one of the managers given above.
  std::string For(const ManagerView& owner, v1::Tier tier) const {
    const Best& best = teams_[team_index_.at(owner.manager->team_id())][tier - 1];
    const ManagerView* pick = best[0] == &owner ? best[1] : best[0];
    return pick == nullptr ? std::string() : pick->manager->manager_id();
  }

 private:
  using Best = std::array<const ManagerView*, 2>;

  // Fewest accounts first, ties by id.
  static bool Better(const ManagerView* a, const ManagerView* b) {
    return b == nullptr || a->accounts < b->accounts ||
           (a->accounts == b->accounts && a->manager->manager_id() < b->manager->manager_id());
  }
  static void Offer(Best& best, const ManagerView* c) {
    if (Better(c, best[0])) {
      best[1] = best[0];
      best[0] = c;
    } else if (Better(c, best[1])) {
      best[1] = c;
    }
  }

  absl::flat_hash_map<absl::string_view, size_t> team_index_;
  std::vector<std::array<Best, 3>> teams_;
};

}  // namespace

absl::StatusOr<v1::GradePolicy> GradePolicyWithDefaults(const v1::GradePolicy& in) {
  v1::GradePolicy p = in;
  auto bad = [](absl::string_view where, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("grade policy ", where, ": ", what));
  };
  if (p.grades_size() == 0) return bad("field 'grades'", "at least one grade is required");
  if (p.window_us() == 0) p.set_window_us(90 * kMicrosPerDay);
  if (p.hunter_window_us() == 0) p.set_hunter_window_us(30 * kMicrosPerDay);
  if (p.abc_a_share() == 0) p.set_abc_a_share(0.80);
  if (p.abc_ab_share() == 0) p.set_abc_ab_share(0.95);
  if (p.hunter_share_floor() == 0) p.set_hunter_share_floor(0.20);
  if (p.window_us() < 0 || p.window_us() >= kMaxTimeUs)
    return bad("field 'window_us'", "out of range");
  if (p.hunter_window_us() < 0 || p.hunter_window_us() >= kMaxTimeUs) {
    return bad("field 'hunter_window_us'", "out of range");
  }
  if (!(p.abc_a_share() > 0 && p.abc_a_share() <= p.abc_ab_share() && p.abc_ab_share() <= 1)) {
    return bad("fields 'abc_a_share', 'abc_ab_share'", "must satisfy 0 < a <= ab <= 1");
  }
  if (!(p.hunter_share_floor() >= 0 && p.hunter_share_floor() <= 1)) {
    return bad("field 'hunter_share_floor'", "must be in [0, 1]");
  }
  absl::flat_hash_map<std::string, int> seen;
  for (int g = 0; g < p.grades_size(); ++g) {
    const v1::Grade& grade = p.grades(g);
    const std::string where = absl::StrCat("grade ", g, " '", grade.id(), "'");
    if (grade.id().empty() || grade.id().size() > kMaxIdBytes)
      return bad(where, "field 'id' must be 1..128 bytes");
    if (!seen.emplace(grade.id(), g).second) return bad(where, "field 'id' is repeated");
    if (grade.max_accounts() < 0) return bad(where, "field 'max_accounts' is negative");
    if (grade.bonus_multiplier() < 0) return bad(where, "field 'bonus_multiplier' is negative");
    for (int r = 0; r < grade.requirements_size(); ++r) {
      const v1::Requirement& req = grade.requirements(r);
      const std::string rwhere = absl::StrCat(where, " requirement ", r);
      if (req.metric() == v1::GRADE_METRIC_UNSPECIFIED || !v1::GradeMetric_IsValid(req.metric())) {
        return bad(rwhere, "field 'metric' is required");
      }
      if (req.metric() == v1::GRADE_METRIC_REVENUE && req.currency().size() != 3) {
        return bad(rwhere, "field 'currency' must be an ISO-4217 code for revenue");
      }
    }
  }
  return p;
}

v1::GradeEvaluation EvaluateGrades(const EngineState& s, const v1::GradePolicy& policy,
                                   int64_t as_of, const GradingInputs& in) {
  v1::GradeEvaluation out;
  out.set_as_of_us(as_of);
  const int n_grades = policy.grades_size();
  absl::flat_hash_map<std::string, int> grade_index;
  for (int g = 0; g < n_grades; ++g) grade_index.emplace(policy.grades(g).id(), g);

  // Managers and their current workloads.
  std::vector<ManagerView> managers;
  absl::flat_hash_map<std::string, size_t> manager_index;
  for (const v1::Manager& m : s.managers.rows()) {
    auto it = grade_index.find(m.grade());
    manager_index.emplace(m.manager_id(), managers.size());
    managers.push_back({&m, it == grade_index.end() ? 0 : it->second});
  }
  for (const v1::Account& a : s.accounts.rows()) {
    if (a.owner_id().empty() || a.status() == v1::ACCOUNT_STATUS_CHURNED) continue;
    auto it = manager_index.find(a.owner_id());
    if (it != manager_index.end()) ++managers[it->second].accounts;
  }

  // The ladder.
  static const ManagerFigures kNoFigures;
  for (const ManagerView& mv : managers) {
    const v1::Manager& m = *mv.manager;
    auto fit = in.managers.find(m.manager_id());
    const ManagerFigures& f = fit == in.managers.end() ? kNoFigures : fit->second;
    const double tenure_days =
        static_cast<double>(std::max<int64_t>(0, as_of - m.hired_at_us())) / kMicrosPerDay;
    auto actual = [&](const v1::Requirement& r) -> std::optional<double> {
      if (r.metric() == v1::GRADE_METRIC_TENURE_DAYS) return tenure_days;
      if (r.metric() == v1::GRADE_METRIC_REVENUE) {
        auto it = f.revenue.find(r.currency());
        return static_cast<double>(it == f.revenue.end() ? 0 : it->second);
      }
      return f.metric[r.metric()];
    };
    auto met = [&](const v1::Requirement& r) {
      std::optional<double> v = actual(r);
      return v.has_value() && *v >= r.min();
    };
    // Never skipping a grade: the first grade with an unmet requirement stops
    // the climb.
    int eligible = -1;
    for (int g = 0; g < n_grades; ++g) {
      const auto& reqs = policy.grades(g).requirements();
      if (!std::all_of(reqs.begin(), reqs.end(), met)) break;
      eligible = g;
    }
    v1::ManagerGrade& mg = *out.add_managers();
    mg.set_manager_id(m.manager_id());
    mg.set_current_grade(policy.grades(mv.grade).id());
    mg.set_eligible_grade(eligible >= 0 ? policy.grades(eligible).id() : "");
    mg.set_bonus_multiplier(policy.grades(mv.grade).bonus_multiplier());
    mg.set_accounts_owned(mv.accounts);
    const int last = std::min(n_grades - 1, std::max(mv.grade, eligible + 1));
    for (int g = eligible + 1; g <= last; ++g) {
      for (const v1::Requirement& r : policy.grades(g).requirements()) {
        if (met(r)) continue;
        v1::UnmetRequirement& u = *mg.add_unmet();
        u.set_metric(r.metric());
        if (std::optional<double> v = actual(r)) u.set_actual(*v);
        u.set_required(r.min());
        u.set_grade(policy.grades(g).id());
        u.set_currency(r.currency());
      }
    }
    if (f.hunter_share.has_value()) {
      mg.set_hunter_share(*f.hunter_share);
      mg.set_hunter_drift(*f.hunter_share < policy.hunter_share_floor());
    }
  }

  // Tiers.
  std::vector<v1::Tier> tiers(s.accounts.size(), v1::TIER_C);
  if (policy.tier_source() == v1::TIER_SOURCE_ACCOUNT) {
    for (uint32_t i = 0; i < s.accounts.size(); ++i) {
      const v1::Tier t = s.accounts.at(i).tier();
      tiers[i] = t == v1::TIER_UNSPECIFIED ? v1::TIER_C : t;
    }
  } else {
    // ABC per currency: accounts by revenue, highest first (ties: the account
    // created first); A while the revenue before it is under the A share of
    // the total, B under the A+B share, then C. No revenue is always C.
    absl::btree_map<std::string, std::vector<std::pair<int64_t, uint32_t>>> by_currency;
    for (const auto& [account, revenue] : in.account_revenue) {
      for (const auto& [currency, amount] : revenue) {
        if (amount > 0 && (policy.abc_currency().empty() || currency == policy.abc_currency())) {
          by_currency[currency].emplace_back(amount, account);
        }
      }
    }
    for (auto& [currency, rows] : by_currency) {
      std::sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) {
        return x.first != y.first ? x.first > y.first : x.second < y.second;
      });
      // Exact integer comparison (shares in parts per million): 80 % of the
      // total must not become A by a rounding error at the boundary.
      __int128 total = 0;
      for (const auto& r : rows) total += r.first;
      const __int128 a_ppm = std::llround(policy.abc_a_share() * 1e6);
      const __int128 ab_ppm = std::llround(policy.abc_ab_share() * 1e6);
      __int128 before = 0;
      for (const auto& [amount, account] : rows) {
        const __int128 scaled = before * 1000000;
        const v1::Tier t = scaled < a_ppm * total    ? v1::TIER_A
                           : scaled < ab_ppm * total ? v1::TIER_B
                                                     : v1::TIER_C;
        tiers[account] = std::min(tiers[account], t);
        before += amount;
      }
    }
  }
  for (uint32_t i = 0; i < s.accounts.size(); ++i) {
    v1::AccountTier& t = *out.add_tiers();
    t.set_account_id(s.accounts.at(i).account_id());
    t.set_tier(tiers[i]);
  }

  // Violations, each with a suggested owner: same team, a grade that allows
  // the tier, room under its limit, the fewest accounts; ties by id.
  const OwnerSuggestions suggestions(managers, policy);
  for (uint32_t i = 0; i < s.accounts.size(); ++i) {
    const v1::Account& a = s.accounts.at(i);
    if (a.owner_id().empty() || a.status() == v1::ACCOUNT_STATUS_CHURNED) continue;
    auto it = manager_index.find(a.owner_id());
    if (it == manager_index.end()) continue;
    const ManagerView& owner = managers[it->second];
    if (Allows(policy.grades(owner.grade).max_tier(), tiers[i])) continue;
    v1::Violation& v = *out.add_violations();
    v.set_kind(v1::Violation::KIND_TIER_ABOVE_GRADE);
    v.set_manager_id(owner.manager->manager_id());
    v.set_account_id(a.account_id());
    v.set_tier(tiers[i]);
    v.set_suggested_owner_id(suggestions.For(owner, tiers[i]));
  }
  for (const ManagerView& mv : managers) {
    const int64_t limit = policy.grades(mv.grade).max_accounts();
    if (limit == 0 || mv.accounts <= limit) continue;
    v1::Violation& v = *out.add_violations();
    v.set_kind(v1::Violation::KIND_OVER_ACCOUNT_LIMIT);
    v.set_manager_id(mv.manager->manager_id());
    v.set_suggested_owner_id(suggestions.For(mv, v1::TIER_C));
  }
  return out;
}

}  // namespace rapport
