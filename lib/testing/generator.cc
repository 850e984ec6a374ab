#include "rapport/testing/generator.h"

#include <cmath>
#include <cstdio>
#include <deque>
#include <functional>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rapport::testing {
namespace {

constexpr int64_t kHour = 3600LL * 1000000;
constexpr int64_t kDay = 24 * kHour;

// SplitMix64: tiny, fast, and the same sequence on every platform (unlike the
// standard distributions, whose algorithms vary between libraries).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  bool Chance(double p) { return Uniform() < p; }
  int64_t Between(int64_t lo, int64_t hi) {  // [lo, hi]
    return lo + static_cast<int64_t>(Next() % static_cast<uint64_t>(hi - lo + 1));
  }
  size_t Index(size_t n) { return static_cast<size_t>(Next() % n); }
  int64_t Exponential(double mean) {
    return static_cast<int64_t>(-std::log(1.0 - Uniform()) * mean);
  }

 private:
  uint64_t s_;
};

struct Team {
  std::string id;
  std::string segment;
  std::vector<std::string> managers;
};

struct Client {
  std::string id;
  int team;
  std::string owner;
  std::string currency;
  int orders = 0;
};

}  // namespace

class Generator::Impl {
 public:
  explicit Impl(const GeneratorOptions& o) : opt_(o), rng_(o.seed ^ 0x5241505054ULL) {
    leads_per_day_ = opt_.leads_per_day > 0 ? opt_.leads_per_day
                     : opt_.max_events > 0
                         ? std::max(4.0, static_cast<double>(opt_.max_events) / (365.0 * 16.0))
                         : 12.0;
    Setup(opt_.start_us);
    Flush();
  }

  bool Next(v1::Event* out) {
    if (opt_.max_events > 0 && delivered_ >= opt_.max_events) return false;
    while (ready_.empty()) {
      if (queue_.empty() || (opt_.end_us > 0 && queue_.top().t >= opt_.end_us)) {
        if (held_.empty()) return false;
        ready_.push_back(std::move(held_.top().event));
        held_.pop();
        break;
      }
      Step step = std::move(const_cast<Step&>(queue_.top()));
      queue_.pop();
      now_ = step.t;
      step.run(step.t);
      Flush();
    }
    *out = std::move(ready_.front());
    ready_.pop_front();
    ++delivered_;
    return true;
  }

  int64_t produced() const { return delivered_; }
  int64_t late() const { return late_; }

 private:
  struct Step {
    int64_t t;
    int64_t seq;
    std::function<void(int64_t)> run;
    bool operator>(const Step& o) const { return t != o.t ? t > o.t : seq > o.seq; }
  };
  struct Held {
    int64_t release;
    int64_t seq;
    mutable v1::Event event;
    bool operator>(const Held& o) const {
      return release != o.release ? release > o.release : seq > o.seq;
    }
  };

  void At(int64_t t, std::function<void(int64_t)> fn) {
    queue_.push(Step{t, step_seq_++, std::move(fn)});
  }

  // Starts the next event; the caller fills in its payload. It is queued
  // when the following event starts or the step ends.
  v1::Event& Emit(int64_t t, bool leaf = false) {
    Flush();
    pending_.Clear();
    pending_.set_event_id(absl::StrFormat("e-%09d", ++emitted_));
    pending_.set_occurred_at_us(t);
    pending_leaf_ = leaf;
    has_pending_ = true;
    return pending_;
  }

  // Events no later event depends on (leaves) may arrive late; they are
  // about half the stream, so they are held back at twice the late share.
  void Flush() {
    if (!has_pending_) return;
    has_pending_ = false;
    const int64_t t = pending_.occurred_at_us();
    while (!held_.empty() && held_.top().release <= t) {
      ready_.push_back(std::move(held_.top().event));
      held_.pop();
    }
    if (pending_leaf_ && rng_.Chance(2 * opt_.late_share)) {
      ++late_;
      held_.push(Held{t + rng_.Between(kHour, 10 * kDay), emitted_, std::move(pending_)});
    } else {
      ready_.push_back(std::move(pending_));
    }
  }

  void Setup(int64_t t) {
    const char* segments[] = {"retail",    "logistics",     "fintech", "healthcare",
                              "education", "manufacturing", "media",   "energy"};
    {
      v1::Event& e = Emit(t);
      auto* m = e.mutable_manager_upserted();
      m->set_manager_id("m-head");
      m->set_name("Head of account management");
      m->set_is_head(true);
      m->set_grade("lead");
    }
    for (int i = 0; i < opt_.teams; ++i) {
      Team team;
      team.id = absl::StrCat("t-", i + 1);
      team.segment = segments[i % 8];
      if (i >= 8) absl::StrAppend(&team.segment, "-", i / 8);
      {
        v1::Event& e = Emit(t);
        auto* p = e.mutable_team_upserted();
        p->set_team_id(team.id);
        p->set_name(absl::StrCat("Team ", team.segment));
        p->add_segments(team.segment);
      }
      const char* grades[] = {"junior", "middle", "senior", "intern", "middle", "junior"};
      for (int j = 0; j < opt_.managers_per_team; ++j) {
        std::string id = absl::StrFormat("m-%d-%02d", i + 1, j + 1);
        v1::Event& e = Emit(t);
        auto* m = e.mutable_manager_upserted();
        m->set_manager_id(id);
        m->set_name(absl::StrCat("Manager ", id));
        m->set_team_id(team.id);
        m->set_grade(j == 0 ? "lead" : grades[j % 6]);
        m->set_hired_at_us(t - rng_.Between(30, 1500) * kDay);
        team.managers.push_back(id);
      }
      {
        v1::Event& e = Emit(t);
        auto* p = e.mutable_team_upserted();
        p->set_team_id(team.id);
        p->set_name(absl::StrCat("Team ", team.segment));
        p->set_lead_id(team.managers.front());
        p->add_segments(team.segment);
      }
      teams_.push_back(std::move(team));
    }
    At(t + kHour, [this](int64_t now) { NewClientLead(now); });
    At(t + 2 * kHour, [this](int64_t now) { NewPartner(now); });
  }

  const std::string& Owner(int team) {
    const auto& ms = teams_[team].managers;
    return ms[rng_.Index(ms.size())];
  }

  void Activity(int64_t t, const std::string& account, const std::string& manager,
                v1::ActivityKind kind, v1::Direction dir) {
    v1::Event& e = Emit(t, true);
    auto* a = e.mutable_activity();
    a->set_account_id(account);
    a->set_manager_id(manager);
    a->set_kind(kind);
    a->set_direction(dir);
  }

  void Stage(int64_t t, const std::string& deal, const char* stage) {
    auto* s = Emit(t).mutable_deal_stage_changed();
    s->set_deal_id(deal);
    s->set_to_stage(stage);
  }

  void Lost(int64_t t, const std::string& deal, const char* reason) {
    auto* l = Emit(t).mutable_deal_lost();
    l->set_deal_id(deal);
    l->set_reason(reason);
  }

  v1::ActivityKind AnyKind() { return static_cast<v1::ActivityKind>(rng_.Between(1, 4)); }

  // --- partners -----------------------------------------------------------

  void NewPartner(int64_t t) {
    At(t + rng_.Exponential(kDay * 20.0 / leads_per_day_),
       [this](int64_t now) { NewPartner(now); });
    const int team = static_cast<int>(rng_.Index(teams_.size()));
    std::string id = absl::StrFormat("p-%06d", ++partner_seq_);
    std::string owner = Owner(team);
    {
      auto* a = Emit(t).mutable_account_upserted();
      a->set_account_id(id);
      a->set_kind(v1::ACCOUNT_KIND_PARTNER);
      a->set_name(absl::StrCat("Partner ", id));
      a->set_owner_id(owner);
      a->set_segment(teams_[team].segment);
      a->set_tier(static_cast<v1::Tier>(rng_.Between(1, 3)));
      a->set_preferred_channel(rng_.Chance(0.5) ? v1::CHANNEL_EMAIL : v1::CHANNEL_MESSENGER);
    }
    std::string deal = absl::StrFormat("d-p-%06d", partner_seq_);
    {
      auto* l = Emit(t).mutable_lead_created();
      l->set_deal_id(deal);
      l->set_account_id(id);
    }
    At(t + rng_.Between(kHour, 2 * kDay), [=](int64_t now) {
      Activity(now, id, owner, v1::ACTIVITY_KIND_CALL, v1::DIRECTION_OUTBOUND);
      Stage(now, deal, "first_contact");
      At(now + rng_.Between(kDay / 2, 5 * kDay), [=](int64_t now2) {
        Activity(now2, id, owner, v1::ACTIVITY_KIND_MEETING, v1::DIRECTION_OUTBOUND);
        Stage(now2, deal, "negotiation");
        At(now2 + rng_.Between(kDay, 6 * kDay), [=](int64_t now3) {
          if (!rng_.Chance(0.6)) {
            Lost(now3, deal, "terms not agreed");
            return;
          }
          Stage(now3, deal, "agreed");
          Emit(now3).mutable_partner_agreed()->set_account_id(id);
          partners_.push_back(id);
          PartnerCare(now3, id, owner, deal);
        });
      });
    });
  }

  void PartnerCare(int64_t t, const std::string& id, const std::string& owner,
                   const std::string& deal) {
    At(t + rng_.Between(2 * kDay, 10 * kDay), [=](int64_t now) {
      Stage(now, deal, "training");
      Activity(now, id, owner, v1::ACTIVITY_KIND_MEETING, v1::DIRECTION_OUTBOUND);
      At(now + rng_.Between(5 * kDay, 20 * kDay), [=](int64_t now2) {
        Stage(now2, deal, "launched");
        At(now2 + rng_.Between(20 * kDay, 60 * kDay), [=](int64_t now3) {
          Stage(now3, deal, "developing");
          if (rng_.Chance(0.1)) {
            At(now3 + rng_.Between(30 * kDay, 200 * kDay), [=](int64_t now4) {
              Emit(now4).mutable_partner_churned()->set_account_id(id);
              for (size_t i = 0; i < partners_.size(); ++i) {
                if (partners_[i] == id) {
                  partners_[i] = partners_.back();
                  partners_.pop_back();
                  break;
                }
              }
              if (rng_.Chance(0.3)) {
                At(now4 + rng_.Between(20 * kDay, 90 * kDay), [=](int64_t now5) {
                  Emit(now5).mutable_partner_agreed()->set_account_id(id);
                  partners_.push_back(id);
                });
              }
            });
          }
        });
      });
    });
  }

  // --- clients ------------------------------------------------------------

  void NewClientLead(int64_t t) {
    At(t + rng_.Exponential(static_cast<double>(kDay) / leads_per_day_),
       [this](int64_t now) { NewClientLead(now); });
    const int team = static_cast<int>(rng_.Index(teams_.size()));
    Client c;
    c.id = absl::StrFormat("c-%07d", ++client_seq_);
    c.team = team;
    c.owner = Owner(team);
    c.currency = rng_.Chance(0.75) ? "RUB" : "USD";
    std::string source;
    if (!partners_.empty() && rng_.Chance(0.4)) source = partners_[rng_.Index(partners_.size())];
    {
      auto* a = Emit(t).mutable_account_upserted();
      a->set_account_id(c.id);
      a->set_kind(v1::ACCOUNT_KIND_CLIENT);
      a->set_name(absl::StrCat("Client ", c.id));
      a->set_owner_id(c.owner);
      a->set_segment(teams_[team].segment);
      const double r = rng_.Uniform();
      a->set_tier(r < 0.2 ? v1::TIER_A : r < 0.5 ? v1::TIER_B : v1::TIER_C);
      a->set_preferred_channel(rng_.Chance(0.55) ? v1::CHANNEL_MESSENGER : v1::CHANNEL_EMAIL);
      if (!clients_.empty() && rng_.Chance(0.2)) {
        a->set_referred_by(clients_[rng_.Index(clients_.size())]);
      }
      a->set_source_partner_id(source);
    }
    std::string deal = absl::StrFormat("d-c-%07d", client_seq_);
    {
      auto* l = Emit(t).mutable_lead_created();
      l->set_deal_id(deal);
      l->set_account_id(c.id);
      l->set_source_partner_id(source);
    }
    auto client = std::make_shared<Client>(std::move(c));
    At(t + rng_.Exponential(6.0 * kHour), [=](int64_t now) {
      Activity(now, client->id, client->owner, v1::ACTIVITY_KIND_CALL, v1::DIRECTION_OUTBOUND);
      At(now + rng_.Between(kDay / 2, 4 * kDay), [=](int64_t now2) {
        if (!rng_.Chance(0.72)) return Lost(now2, deal, "no budget");
        Stage(now2, deal, "qualified");
        Activity(now2, client->id, client->owner, v1::ACTIVITY_KIND_EMAIL, v1::DIRECTION_OUTBOUND);
        At(now2 + rng_.Between(kDay / 2, 4 * kDay), [=](int64_t now3) {
          if (!rng_.Chance(0.75)) return Lost(now3, deal, "chose a competitor");
          Stage(now3, deal, "proposal");
          Activity(now3, client->id, client->owner, v1::ACTIVITY_KIND_MEETING,
                   v1::DIRECTION_OUTBOUND);
          At(now3 + rng_.Between(kDay, 5 * kDay), [=](int64_t now4) {
            if (!rng_.Chance(0.46)) return Lost(now4, deal, "postponed");
            Stage(now4, deal, "prepaid");
            if (rng_.Chance(0.3)) Emit(now4).mutable_deal_won()->set_deal_id(deal);
            clients_.push_back(client->id);
            Order(now4, client, deal);
          });
        });
      });
    });
  }

  int64_t Amount(const std::string& currency) {
    return currency == "RUB" ? rng_.Between(50000, 2000000) * 100 : rng_.Between(500, 20000) * 100;
  }

  // One order through delivery, support, feedback and maybe a case study;
  // then maybe a repeat order.
  void Order(int64_t t, std::shared_ptr<Client> c, const std::string& deal) {
    const int n = ++c->orders;
    std::string order = absl::StrCat("o-", c->id.substr(2), "-", n);
    std::string invoice = absl::StrCat("i-", c->id.substr(2), "-", n);
    const int64_t amount = Amount(c->currency);
    {
      auto* o = Emit(t).mutable_order_placed();
      o->set_order_id(order);
      o->set_account_id(c->id);
      o->set_deal_id(deal);
      o->mutable_amount()->set_amount_minor(amount);
      o->mutable_amount()->set_currency(c->currency);
      o->set_due_at_us(t + 14 * kDay);
    }
    {
      auto* inv = Emit(t).mutable_invoice_issued();
      inv->set_invoice_id(invoice);
      inv->set_account_id(c->id);
      inv->set_order_id(order);
      inv->mutable_amount()->set_amount_minor(amount);
      inv->mutable_amount()->set_currency(c->currency);
      inv->set_due_at_us(t + 10 * kDay);
    }
    // Payment: mostly in full, sometimes in two parts, sometimes late.
    const bool split = rng_.Chance(0.15);
    const int64_t first = split ? amount / 2 : amount;
    At(t + rng_.Between(kHour, rng_.Chance(0.2) ? 30 * kDay : 9 * kDay), [=](int64_t now) {
      Payment(now, c, order, invoice, first);
      if (split) {
        At(now + rng_.Between(kDay, 20 * kDay),
           [=](int64_t now2) { Payment(now2, c, order, invoice, amount - first); });
      }
    });
    // Post-purchase contact within 7 days, most of the time.
    if (rng_.Chance(0.7)) {
      At(t + rng_.Between(kHour, 8 * kDay), [=](int64_t now) {
        Activity(now, c->id, c->owner,
                 rng_.Chance(0.5) ? v1::ACTIVITY_KIND_CALL : v1::ACTIVITY_KIND_MESSENGER,
                 v1::DIRECTION_OUTBOUND);
      });
    }
    const bool first_order = n == 1;
    At(t + rng_.Between(kDay, 3 * kDay), [=](int64_t now) {
      if (first_order) Stage(now, deal, "in_work");
      int64_t done = now + rng_.Between(3 * kDay, 20 * kDay);
      if (rng_.Chance(0.15)) {
        const int64_t delayed_at = now + rng_.Between(kDay, 3 * kDay);
        done += rng_.Between(3 * kDay, 15 * kDay);
        At(delayed_at, [=](int64_t now2) {
          auto* d = Emit(now2, true).mutable_order_delayed();
          d->set_order_id(order);
          d->set_new_due_at_us(done);
          d->set_reason("supplier delay");
        });
      }
      At(done, [=](int64_t now2) {
        Emit(now2).mutable_order_completed()->set_order_id(order);
        if (first_order) Stage(now2, deal, "delivered");
        AfterDelivery(now2, c, deal, order, first_order);
      });
    });
  }

  void Payment(int64_t t, const std::shared_ptr<Client>& c, const std::string& order,
               const std::string& invoice, int64_t amount) {
    auto* p = Emit(t, true).mutable_payment_received();
    p->set_account_id(c->id);
    p->mutable_amount()->set_amount_minor(amount);
    p->mutable_amount()->set_currency(c->currency);
    p->set_order_id(order);
    p->set_invoice_id(invoice);
  }

  void AfterDelivery(int64_t t, std::shared_ptr<Client> c, const std::string& deal,
                     const std::string& order, bool first_order) {
    At(t + rng_.Between(kDay, 5 * kDay), [=](int64_t now) {
      if (first_order) Stage(now, deal, "support");
      Activity(now, c->id, c->owner, AnyKind(), v1::DIRECTION_INBOUND);
      if (rng_.Chance(0.12)) {
        std::string complaint = absl::StrFormat("cmp-%07d", ++complaint_seq_);
        auto* co = Emit(now).mutable_complaint_opened();
        co->set_complaint_id(complaint);
        co->set_account_id(c->id);
        const double r = rng_.Uniform();
        co->set_severity(r < 0.4    ? v1::SEVERITY_LOW
                         : r < 0.75 ? v1::SEVERITY_MEDIUM
                         : r < 0.93 ? v1::SEVERITY_HIGH
                                    : v1::SEVERITY_CRITICAL);
        At(now + rng_.Between(kHour * 4, 12 * kDay), [=](int64_t now2) {
          Emit(now2).mutable_complaint_resolved()->set_complaint_id(complaint);
        });
      }
    });
    At(t + rng_.Between(12 * kDay, 30 * kDay), [=](int64_t now) {
      if (first_order) Stage(now, deal, "feedback");
      if (rng_.Chance(0.6)) {
        auto* f = Emit(now, true).mutable_feedback_received();
        f->set_account_id(c->id);
        const double r = rng_.Uniform();
        f->set_score(static_cast<int>(r < 0.5   ? rng_.Between(9, 10)
                                      : r < 0.8 ? rng_.Between(7, 8)
                                                : rng_.Between(0, 6)));
        f->set_order_id(order);
      }
      if (first_order) {
        At(now + rng_.Between(5 * kDay, 30 * kDay), [=](int64_t now2) {
          if (rng_.Chance(0.15)) {
            Stage(now2, deal, "case_study");
            auto* cs = Emit(now2, true).mutable_case_study_published();
            cs->set_account_id(c->id);
            cs->set_deal_id(deal);
          }
          At(now2 + kDay, [=](int64_t now3) { Stage(now3, deal, "closed"); });
        });
      }
      // Farming: occasional contacts, an owner change, a churn, a repeat order.
      if (rng_.Chance(0.5)) {
        At(now + rng_.Between(10 * kDay, 90 * kDay), [=](int64_t now2) {
          Activity(now2, c->id, c->owner, AnyKind(), v1::DIRECTION_OUTBOUND);
        });
      }
      if (rng_.Chance(0.04)) {
        At(now + rng_.Between(5 * kDay, 60 * kDay), [=](int64_t now2) {
          c->owner = Owner(c->team);
          auto* a = Emit(now2).mutable_account_upserted();
          a->set_account_id(c->id);
          a->set_kind(v1::ACCOUNT_KIND_CLIENT);
          a->set_name(absl::StrCat("Client ", c->id));
          a->set_owner_id(c->owner);
          a->set_segment(teams_[c->team].segment);
          a->set_tier(v1::TIER_B);
          a->set_preferred_channel(v1::CHANNEL_EMAIL);
        });
      }
      if (c->orders < 6 && rng_.Chance(0.45)) {
        At(now + rng_.Between(20 * kDay, 200 * kDay), [=](int64_t now2) { Order(now2, c, ""); });
      } else if (rng_.Chance(0.1)) {
        At(now + rng_.Between(30 * kDay, 300 * kDay), [=](int64_t now2) {
          auto* ch = Emit(now2).mutable_account_churned();
          ch->set_account_id(c->id);
          ch->set_reason("stopped responding");
        });
      }
    });
  }

  GeneratorOptions opt_;
  Rng rng_;
  double leads_per_day_;
  int64_t now_ = 0;
  int64_t step_seq_ = 0;
  int64_t emitted_ = 0;
  int64_t delivered_ = 0;
  int64_t late_ = 0;
  int64_t partner_seq_ = 0;
  int64_t client_seq_ = 0;
  int64_t complaint_seq_ = 0;
  std::vector<Team> teams_;
  std::vector<std::string> partners_;
  std::vector<std::string> clients_;
  std::priority_queue<Step, std::vector<Step>, std::greater<>> queue_;
  std::priority_queue<Held, std::vector<Held>, std::greater<>> held_;
  std::deque<v1::Event> ready_;
  v1::Event pending_;
  bool pending_leaf_ = false;
  bool has_pending_ = false;
};

Generator::Generator(const GeneratorOptions& options) : impl_(std::make_unique<Impl>(options)) {}
Generator::~Generator() = default;
bool Generator::Next(v1::Event* event) { return impl_->Next(event); }
int64_t Generator::produced() const { return impl_->produced(); }
int64_t Generator::late() const { return impl_->late(); }

std::vector<v1::Event> GenerateStream(const GeneratorOptions& options) {
  std::vector<v1::Event> out;
  if (options.max_events > 0) out.reserve(static_cast<size_t>(options.max_events));
  Generator g(options);
  v1::Event e;
  while (g.Next(&e)) out.push_back(std::move(e));
  return out;
}

}  // namespace rapport::testing
