#include "lib/ingest/validate.h"

#include <string>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "lib/ingest/fingerprint.h"
#include "lib/util/fingerprint.h"
#include "lib/util/utf8.h"
#include "rapport/engine.h"

namespace rapport {
namespace {

using absl::StrCat;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(StrCat("field '", field, "': ", what));
}
absl::Status NotFound(absl::string_view field, absl::string_view kind, absl::string_view id) {
  return absl::NotFoundError(StrCat("field '", field, "': unknown ", kind, " '", id, "'"));
}
absl::Status Exists(absl::string_view field, absl::string_view kind, absl::string_view id) {
  return absl::AlreadyExistsError(
      StrCat("field '", field, "': ", kind, " '", id, "' already exists"));
}

// Why `id` is not a valid id (it is not: IdOk said so). Out of line and
// cold: building a message needs a frame the valid case should not pay for.
ABSL_ATTRIBUTE_NOINLINE absl::Status IdError(absl::string_view field, absl::string_view id) {
  if (id.empty()) return Invalid(field, "is required");
  const ByteScan scan = ScanBytes(id);
  if (id.size() > kMaxIdBytes || scan.control) {
    return Invalid(field, StrCat("must be 1..", kMaxIdBytes, " bytes without control characters"));
  }
  return Invalid(field, "is not valid UTF-8");
}

// 1..kMaxIdBytes bytes, no control character, valid UTF-8: one pass over the
// bytes, the UTF-8 check only when a byte is not ASCII.
inline bool IdOk(absl::string_view id) {
  if (id.empty() || id.size() > kMaxIdBytes) return false;
  const ByteScan scan = ScanBytes(id);
  return !scan.control && (!scan.high || IsValidUtf8(id));
}

// Runs for every id field of every event: the valid case is inline and
// returns an OK status (no allocation); IdError explains a bad one.
inline absl::Status CheckId(absl::string_view field, absl::string_view id) {
  if (ABSL_PREDICT_TRUE(IdOk(id))) return absl::OkStatus();
  return IdError(field, id);
}

absl::Status CheckText(absl::string_view field, absl::string_view text) {
  if (text.size() > kMaxTextBytes) {
    return Invalid(field, StrCat("is ", text.size(), " bytes; the limit is ", kMaxTextBytes));
  }
  if (!IsValidUtf8(text)) return Invalid(field, "is not valid UTF-8");
  return absl::OkStatus();
}

bool ValidTime(int64_t t) { return t >= kMinTimeUs && t < kMaxTimeUs; }

ABSL_ATTRIBUTE_NOINLINE absl::Status TimeError(absl::string_view field, int64_t t, bool required) {
  if (t == 0 && required) return Invalid(field, "is required");
  return Invalid(field, StrCat(t, " is outside years 1970..9999 (microseconds since the epoch)"));
}

// Every event's time goes through here: the valid case inline, as CheckId.
inline absl::Status CheckTime(absl::string_view field, int64_t t, bool required) {
  if (ABSL_PREDICT_TRUE(ValidTime(t) && (t != 0 || !required))) return absl::OkStatus();
  return TimeError(field, t, required);
}

absl::Status CheckMoney(absl::string_view field, const v1::Money& m) {
  if (m.amount_minor() < 0) {
    return Invalid(StrCat(field, ".amount_minor"), StrCat(m.amount_minor(), " is negative"));
  }
  const std::string& c = m.currency();
  bool ok = c.size() == 3;
  for (char ch : c) ok = ok && ch >= 'A' && ch <= 'Z';
  if (!ok) {
    return Invalid(StrCat(field, ".currency"),
                   StrCat("'", c, "' is not an ISO-4217 code (three upper-case letters)"));
  }
  return absl::OkStatus();
}

constexpr uint32_t kNone = EventRefs::kNone;

// A row id with its IdHash: the View looks it up in the state's table and,
// on a miss, in the overlay, and a new id is filed in the overlay, all with
// the one hash.
using Key = BatchOverlay::HashedId;
Key KeyOf(absl::string_view id) { return Key{id, IdHash(id)}; }

// Lookups that see the state and the batch so far. Each returns the row's
// index as well (as it will be once the batch is applied), for EventRefs.
class View {
 public:
  View(const EngineState& s, const BatchOverlay* o) : s_(s), o_(o) {}

  struct Account {
    v1::AccountKind kind = v1::ACCOUNT_KIND_UNSPECIFIED;  // unspecified: unknown
    uint32_t index = kNone;
  };
  // The state first: most events refer to accounts it holds, and an account
  // the overlay holds too has the same kind (it cannot change) and index.
  Account FindAccount(const Key& k) const {
    if (const uint32_t i = s_.accounts.IndexOf(k.id, k.hash); i != kNone) {
      return Account{KindOfAccount(s_, i), i};
    }
    if (o_ != nullptr) {
      auto it = o_->accounts.find(k);
      if (it != o_->accounts.end()) return Account{it->second.kind, it->second.index};
    }
    return Account{};
  }
  // The stored manager's row index, else kNone; false when unknown.
  bool FindManager(const Key& k, uint32_t* index) const {
    *index = s_.managers.IndexOf(k.id, k.hash);
    return *index != kNone || (o_ != nullptr && o_->managers.contains(k));
  }
  bool HasManager(const Key& k) const {
    uint32_t unused;
    return FindManager(k, &unused);
  }
  bool HasTeam(const Key& k) const {
    return s_.teams.IndexOf(k.id, k.hash) != kNone || (o_ != nullptr && o_->teams.contains(k));
  }
  struct Deal {
    const PipelineInfo* pipeline = nullptr;
    // The batch's entry for a deal the batch creates; nullptr for a stored
    // deal.
    const BatchOverlay::DealInfo* created = nullptr;
    uint32_t index = kNone;
    uint32_t account = kNone;
  };
  // False when the deal is unknown. Reads the derived links only, not the
  // deal's row: that row is a cache miss on most events about a deal.
  bool FindDeal(const Key& k, Deal* out) const {
    if (const uint32_t i = s_.deals.IndexOf(k.id, k.hash); i != kNone) {
      const DealLink link = LinkOfDeal(s_, i);
      out->pipeline = &s_.pipelines.all()[static_cast<size_t>(link.pipeline)];
      out->created = nullptr;
      out->index = i;
      out->account = link.account;
      return true;
    }
    if (o_ != nullptr) {
      auto it = o_->deals.find(k);
      if (it != o_->deals.end()) {
        out->pipeline = it->second.pipeline;
        out->created = &it->second;
        out->index = it->second.index;
        out->account = it->second.account;
        return true;
      }
    }
    return false;
  }
  // The id of the account a deal FindDeal found belongs to (for messages).
  absl::string_view DealAccountId(const Deal& d) const {
    return d.created != nullptr ? d.created->account_id : s_.deals.at(d.index).account_id();
  }
  bool HasDeal(const Key& k) const {
    Deal unused;
    return FindDeal(k, &unused);
  }
  // The order's index and links, or false.
  bool FindOrder(const Key& k, uint32_t* index, OrderLink* link) const {
    if (const uint32_t i = s_.orders.IndexOf(k.id, k.hash); i != kNone) {
      *index = i;
      *link = LinkOfOrder(s_, i);
      return true;
    }
    if (o_ != nullptr) {
      auto it = o_->orders.find(k);
      if (it != o_->orders.end()) {
        *index = it->second.index;
        *link = it->second.link;
        return true;
      }
    }
    return false;
  }
  bool HasOrder(const Key& k) const {
    uint32_t index;
    OrderLink link;
    return FindOrder(k, &index, &link);
  }
  // The invoice's currency and index, or false.
  bool FindInvoice(const Key& k, absl::string_view* currency, uint32_t* index) const {
    if (const uint32_t i = s_.invoices.IndexOf(k.id, k.hash); i != kNone) {
      *currency = s_.invoices.at(i).amount().currency();
      *index = i;
      return true;
    }
    if (o_ != nullptr) {
      auto it = o_->invoices.find(k);
      if (it != o_->invoices.end()) {
        *currency = it->second.currency;
        *index = it->second.index;
        return true;
      }
    }
    return false;
  }
  // The complaint's index and account, or false.
  bool FindComplaint(const Key& k, uint32_t* index, uint32_t* account) const {
    if (const uint32_t i = s_.complaints.IndexOf(k.id, k.hash); i != kNone) {
      *index = i;
      *account = AccountOfComplaint(s_, i);
      return true;
    }
    if (o_ != nullptr) {
      auto it = o_->complaints.find(k);
      if (it != o_->complaints.end()) {
        *index = it->second.index;
        *account = it->second.account;
        return true;
      }
    }
    return false;
  }
  bool HasTask(absl::string_view id) const {
    const rules::StoredAction* a = s_.actions.Find(id);
    return a != nullptr && a->kind == v1::ACTION_KIND_CREATE_TASK;
  }
  const Pipelines& pipelines() const { return s_.pipelines; }
  int32_t PipelineIndex(const PipelineInfo* p) const {
    return static_cast<int32_t>(p - s_.pipelines.all().data());
  }
  // The index the next row created in each table gets.
  uint32_t NextAccount() const {
    return static_cast<uint32_t>(s_.accounts.size()) + (o_ != nullptr ? o_->new_accounts : 0);
  }
  uint32_t NextDeal() const {
    return static_cast<uint32_t>(s_.deals.size()) + (o_ != nullptr ? o_->new_deals : 0);
  }
  uint32_t NextOrder() const {
    return static_cast<uint32_t>(s_.orders.size()) + (o_ != nullptr ? o_->new_orders : 0);
  }
  uint32_t NextInvoice() const {
    return static_cast<uint32_t>(s_.invoices.size()) + (o_ != nullptr ? o_->new_invoices : 0);
  }
  uint32_t NextComplaint() const {
    return static_cast<uint32_t>(s_.complaints.size()) + (o_ != nullptr ? o_->new_complaints : 0);
  }

 private:
  const EngineState& s_;
  const BatchOverlay* o_;
};

// `index` (when given) receives the account's row index.
absl::Status NeedAccount(const View& v, absl::string_view field, absl::string_view id,
                         uint32_t* index = nullptr) {
  if (absl::Status st = CheckId(field, id); !st.ok()) return st;
  const View::Account a = v.FindAccount(KeyOf(id));
  if (a.kind == v1::ACCOUNT_KIND_UNSPECIFIED) return NotFound(field, "account", id);
  if (index != nullptr) *index = a.index;
  return absl::OkStatus();
}

absl::Status NeedPartner(const View& v, absl::string_view field, absl::string_view id,
                         uint32_t* index = nullptr) {
  if (absl::Status st = CheckId(field, id); !st.ok()) return st;
  const View::Account a = v.FindAccount(KeyOf(id));
  if (a.kind == v1::ACCOUNT_KIND_UNSPECIFIED) return NotFound(field, "account", id);
  if (a.kind != v1::ACCOUNT_KIND_PARTNER) {
    return absl::FailedPreconditionError(
        StrCat("field '", field, "': account '", id, "' is a client, not a partner"));
  }
  if (index != nullptr) *index = a.index;
  return absl::OkStatus();
}

absl::Status NeedManager(const View& v, absl::string_view field, absl::string_view id,
                         uint32_t* index = nullptr) {
  if (absl::Status st = CheckId(field, id); !st.ok()) return st;
  uint32_t i;
  if (!v.FindManager(KeyOf(id), &i)) return NotFound(field, "manager", id);
  if (index != nullptr) *index = i;
  return absl::OkStatus();
}

absl::Status NeedOrder(const View& v, absl::string_view field, absl::string_view id,
                       uint32_t* index = nullptr, OrderLink* link = nullptr) {
  if (absl::Status st = CheckId(field, id); !st.ok()) return st;
  uint32_t i;
  OrderLink l;
  if (!v.FindOrder(KeyOf(id), &i, &l)) return NotFound(field, "order", id);
  if (index != nullptr) *index = i;
  if (link != nullptr) *link = l;
  return absl::OkStatus();
}

absl::Status NeedDeal(const View& v, absl::string_view field, absl::string_view id,
                      View::Deal* deal) {
  if (absl::Status st = CheckId(field, id); !st.ok()) return st;
  if (!v.FindDeal(KeyOf(id), deal)) return NotFound(field, "deal", id);
  return absl::OkStatus();
}

// Optional references: empty is fine, otherwise it must resolve.
template <typename Check>
absl::Status Optional(absl::string_view id, Check check) {
  return id.empty() ? absl::OkStatus() : check();
}

#define RETURN_IF_ERROR(expr)                             \
  do {                                                    \
    if (absl::Status _st = (expr); !_st.ok()) return _st; \
  } while (0)

// Checks the payload; on success fills `r` (all but id_hash) and records in
// `o` what the event creates.
absl::Status ValidatePayload(const v1::Event& e, const View& v, BatchOverlay* o, EventRefs* r) {
  switch (e.payload_case()) {
    case v1::Event::kAccountUpserted: {
      const auto& p = e.account_upserted();
      RETURN_IF_ERROR(CheckId("account_upserted.account_id", p.account_id()));
      if (p.kind() != v1::ACCOUNT_KIND_CLIENT && p.kind() != v1::ACCOUNT_KIND_PARTNER) {
        return Invalid("account_upserted.kind",
                       "must be ACCOUNT_KIND_CLIENT or ACCOUNT_KIND_PARTNER");
      }
      const Key key = KeyOf(p.account_id());
      const View::Account existing = v.FindAccount(key);
      if (existing.kind != v1::ACCOUNT_KIND_UNSPECIFIED && existing.kind != p.kind()) {
        return absl::FailedPreconditionError(
            StrCat("field 'account_upserted.kind': account '", p.account_id(), "' is a ",
                   v1::AccountKind_Name(existing.kind), "; the kind of an account cannot change"));
      }
      RETURN_IF_ERROR(CheckText("account_upserted.name", p.name()));
      RETURN_IF_ERROR(CheckText("account_upserted.segment", p.segment()));
      RETURN_IF_ERROR(Optional(
          p.owner_id(), [&] { return NeedManager(v, "account_upserted.owner_id", p.owner_id()); }));
      RETURN_IF_ERROR(Optional(p.team_id(), [&]() -> absl::Status {
        RETURN_IF_ERROR(CheckId("account_upserted.team_id", p.team_id()));
        if (!v.HasTeam(KeyOf(p.team_id())))
          return NotFound("account_upserted.team_id", "team", p.team_id());
        return absl::OkStatus();
      }));
      if (!v1::Tier_IsValid(p.tier())) return Invalid("account_upserted.tier", "unknown tier");
      if (p.preferred_channel() == v1::CHANNEL_PHONE ||
          !v1::Channel_IsValid(p.preferred_channel())) {
        return Invalid("account_upserted.preferred_channel",
                       "must be a written channel (email or messenger)");
      }
      RETURN_IF_ERROR(Optional(p.referred_by(), [&]() -> absl::Status {
        if (p.referred_by() == p.account_id()) {
          return Invalid("account_upserted.referred_by", "an account cannot refer itself");
        }
        return NeedAccount(v, "account_upserted.referred_by", p.referred_by());
      }));
      RETURN_IF_ERROR(Optional(p.source_partner_id(), [&] {
        return NeedPartner(v, "account_upserted.source_partner_id", p.source_partner_id());
      }));
      RETURN_IF_ERROR(CheckTime("account_upserted.created_at_us", p.created_at_us(), false));
      const bool is_new = existing.kind == v1::ACCOUNT_KIND_UNSPECIFIED;
      r->account = is_new ? v.NextAccount() : existing.index;
      if (o != nullptr) {
        o->accounts.emplace(key, BatchOverlay::AccountInfo{p.kind(), r->account});
        if (is_new) ++o->new_accounts;
      }
      return absl::OkStatus();
    }
    case v1::Event::kManagerUpserted: {
      const auto& p = e.manager_upserted();
      RETURN_IF_ERROR(CheckId("manager_upserted.manager_id", p.manager_id()));
      RETURN_IF_ERROR(CheckText("manager_upserted.name", p.name()));
      RETURN_IF_ERROR(Optional(p.team_id(), [&]() -> absl::Status {
        RETURN_IF_ERROR(CheckId("manager_upserted.team_id", p.team_id()));
        if (!v.HasTeam(KeyOf(p.team_id())))
          return NotFound("manager_upserted.team_id", "team", p.team_id());
        return absl::OkStatus();
      }));
      RETURN_IF_ERROR(
          Optional(p.grade(), [&] { return CheckId("manager_upserted.grade", p.grade()); }));
      RETURN_IF_ERROR(CheckTime("manager_upserted.hired_at_us", p.hired_at_us(), false));
      if (o != nullptr) o->managers.insert(KeyOf(p.manager_id()));
      return absl::OkStatus();
    }
    case v1::Event::kTeamUpserted: {
      const auto& p = e.team_upserted();
      RETURN_IF_ERROR(CheckId("team_upserted.team_id", p.team_id()));
      RETURN_IF_ERROR(CheckText("team_upserted.name", p.name()));
      RETURN_IF_ERROR(Optional(
          p.lead_id(), [&] { return NeedManager(v, "team_upserted.lead_id", p.lead_id()); }));
      if (p.segments_size() > static_cast<int>(kMaxSegmentsPerTeam)) {
        return Invalid("team_upserted.segments",
                       StrCat(p.segments_size(), " segments; the limit is ", kMaxSegmentsPerTeam));
      }
      for (int i = 0; i < p.segments_size(); ++i) {
        RETURN_IF_ERROR(CheckText(StrCat("team_upserted.segments[", i, "]"), p.segments(i)));
      }
      if (o != nullptr) o->teams.insert(KeyOf(p.team_id()));
      return absl::OkStatus();
    }
    case v1::Event::kLeadCreated: {
      const auto& p = e.lead_created();
      RETURN_IF_ERROR(CheckId("lead_created.deal_id", p.deal_id()));
      const Key key = KeyOf(p.deal_id());
      if (v.HasDeal(key)) return Exists("lead_created.deal_id", "deal", p.deal_id());
      RETURN_IF_ERROR(CheckId("lead_created.account_id", p.account_id()));
      const View::Account acc = v.FindAccount(KeyOf(p.account_id()));
      if (acc.kind == v1::ACCOUNT_KIND_UNSPECIFIED) {
        return NotFound("lead_created.account_id", "account", p.account_id());
      }
      const PipelineInfo* pl = nullptr;
      if (!p.pipeline_id().empty()) {
        pl = v.pipelines().Find(p.pipeline_id());
        if (pl == nullptr) return NotFound("lead_created.pipeline_id", "pipeline", p.pipeline_id());
      } else {
        pl = v.pipelines().DefaultFor(acc.kind);
        if (pl == nullptr) {
          return absl::FailedPreconditionError(
              StrCat("field 'lead_created.pipeline_id': no default pipeline for ",
                     v1::AccountKind_Name(acc.kind), "; name one"));
        }
      }
      RETURN_IF_ERROR(Optional(p.source_partner_id(), [&] {
        return NeedPartner(v, "lead_created.source_partner_id", p.source_partner_id());
      }));
      r->account = acc.index;
      r->deal = v.NextDeal();
      r->pipeline = v.PipelineIndex(pl);
      if (o != nullptr) {
        o->deals.emplace(key, BatchOverlay::DealInfo{pl, p.account_id(), r->deal, r->account});
        ++o->new_deals;
      }
      return absl::OkStatus();
    }
    case v1::Event::kDealStageChanged: {
      const auto& p = e.deal_stage_changed();
      View::Deal d;
      RETURN_IF_ERROR(NeedDeal(v, "deal_stage_changed.deal_id", p.deal_id(), &d));
      if (p.to_stage().empty()) return Invalid("deal_stage_changed.to_stage", "is required");
      const int stage = d.pipeline->StageIndex(p.to_stage());
      if (stage < 0) {
        return Invalid("deal_stage_changed.to_stage",
                       StrCat("'", p.to_stage(), "' is not a stage of pipeline '",
                              d.pipeline->pipeline.id(), "'"));
      }
      r->account = d.account;
      r->deal = d.index;
      r->pipeline = v.PipelineIndex(d.pipeline);
      r->stage = stage;
      return absl::OkStatus();
    }
    case v1::Event::kDealWon: {
      View::Deal d;
      RETURN_IF_ERROR(NeedDeal(v, "deal_won.deal_id", e.deal_won().deal_id(), &d));
      r->account = d.account;
      r->deal = d.index;
      r->pipeline = v.PipelineIndex(d.pipeline);
      return absl::OkStatus();
    }
    case v1::Event::kDealLost: {
      View::Deal d;
      RETURN_IF_ERROR(NeedDeal(v, "deal_lost.deal_id", e.deal_lost().deal_id(), &d));
      RETURN_IF_ERROR(CheckText("deal_lost.reason", e.deal_lost().reason()));
      r->account = d.account;
      r->deal = d.index;
      r->pipeline = v.PipelineIndex(d.pipeline);
      return absl::OkStatus();
    }
    case v1::Event::kPartnerAgreed:
      return NeedPartner(v, "partner_agreed.account_id", e.partner_agreed().account_id(),
                         &r->account);
    case v1::Event::kPartnerChurned:
      return NeedPartner(v, "partner_churned.account_id", e.partner_churned().account_id(),
                         &r->account);
    case v1::Event::kAccountChurned: {
      uint32_t account;
      RETURN_IF_ERROR(
          NeedAccount(v, "account_churned.account_id", e.account_churned().account_id(), &account));
      RETURN_IF_ERROR(CheckText("account_churned.reason", e.account_churned().reason()));
      r->account = account;
      return absl::OkStatus();
    }
    case v1::Event::kOrderPlaced: {
      const auto& p = e.order_placed();
      RETURN_IF_ERROR(CheckId("order_placed.order_id", p.order_id()));
      const Key key = KeyOf(p.order_id());
      if (v.HasOrder(key)) return Exists("order_placed.order_id", "order", p.order_id());
      uint32_t account;
      RETURN_IF_ERROR(NeedAccount(v, "order_placed.account_id", p.account_id(), &account));
      uint32_t deal = kNone;
      RETURN_IF_ERROR(Optional(p.deal_id(), [&]() -> absl::Status {
        View::Deal d;
        RETURN_IF_ERROR(NeedDeal(v, "order_placed.deal_id", p.deal_id(), &d));
        // Ids and row indexes correspond one to one, so comparing the
        // indexes compares the ids.
        if (d.account != account) {
          return Invalid(
              "order_placed.deal_id",
              StrCat("deal '", p.deal_id(), "' belongs to account '", v.DealAccountId(d), "'"));
        }
        deal = d.index;
        return absl::OkStatus();
      }));
      if (!p.has_amount()) return Invalid("order_placed.amount", "is required");
      RETURN_IF_ERROR(CheckMoney("order_placed.amount", p.amount()));
      RETURN_IF_ERROR(CheckTime("order_placed.due_at_us", p.due_at_us(), false));
      r->account = account;
      r->deal = deal;
      r->order = v.NextOrder();
      if (o != nullptr) {
        o->orders.emplace(key, BatchOverlay::OrderInfo{r->order, OrderLink{account, deal}});
        ++o->new_orders;
      }
      return absl::OkStatus();
    }
    case v1::Event::kOrderDelayed: {
      const auto& p = e.order_delayed();
      uint32_t order;
      OrderLink link;
      RETURN_IF_ERROR(NeedOrder(v, "order_delayed.order_id", p.order_id(), &order, &link));
      RETURN_IF_ERROR(CheckTime("order_delayed.new_due_at_us", p.new_due_at_us(), true));
      RETURN_IF_ERROR(CheckText("order_delayed.reason", p.reason()));
      r->account = link.account;
      r->deal = link.deal;
      r->order = order;
      return absl::OkStatus();
    }
    case v1::Event::kOrderCompleted: {
      uint32_t order;
      OrderLink link;
      RETURN_IF_ERROR(
          NeedOrder(v, "order_completed.order_id", e.order_completed().order_id(), &order, &link));
      r->account = link.account;
      r->deal = link.deal;
      r->order = order;
      return absl::OkStatus();
    }
    case v1::Event::kInvoiceIssued: {
      const auto& p = e.invoice_issued();
      RETURN_IF_ERROR(CheckId("invoice_issued.invoice_id", p.invoice_id()));
      absl::string_view existing;
      uint32_t unused;
      const Key key = KeyOf(p.invoice_id());
      if (v.FindInvoice(key, &existing, &unused)) {
        return Exists("invoice_issued.invoice_id", "invoice", p.invoice_id());
      }
      uint32_t account;
      RETURN_IF_ERROR(NeedAccount(v, "invoice_issued.account_id", p.account_id(), &account));
      RETURN_IF_ERROR(Optional(
          p.order_id(), [&] { return NeedOrder(v, "invoice_issued.order_id", p.order_id()); }));
      if (!p.has_amount()) return Invalid("invoice_issued.amount", "is required");
      RETURN_IF_ERROR(CheckMoney("invoice_issued.amount", p.amount()));
      RETURN_IF_ERROR(CheckTime("invoice_issued.due_at_us", p.due_at_us(), true));
      r->account = account;
      r->invoice = v.NextInvoice();
      if (o != nullptr) {
        o->invoices.emplace(key, BatchOverlay::InvoiceInfo{p.amount().currency(), r->invoice});
        ++o->new_invoices;
      }
      return absl::OkStatus();
    }
    case v1::Event::kPaymentReceived: {
      const auto& p = e.payment_received();
      uint32_t account;
      RETURN_IF_ERROR(NeedAccount(v, "payment_received.account_id", p.account_id(), &account));
      if (!p.has_amount()) return Invalid("payment_received.amount", "is required");
      RETURN_IF_ERROR(CheckMoney("payment_received.amount", p.amount()));
      RETURN_IF_ERROR(Optional(
          p.order_id(), [&] { return NeedOrder(v, "payment_received.order_id", p.order_id()); }));
      uint32_t invoice = kNone;
      RETURN_IF_ERROR(Optional(p.invoice_id(), [&]() -> absl::Status {
        RETURN_IF_ERROR(CheckId("payment_received.invoice_id", p.invoice_id()));
        absl::string_view cur;
        if (!v.FindInvoice(KeyOf(p.invoice_id()), &cur, &invoice)) {
          return NotFound("payment_received.invoice_id", "invoice", p.invoice_id());
        }
        if (cur != p.amount().currency()) {
          return Invalid("payment_received.amount.currency",
                         StrCat("'", p.amount().currency(), "' differs from invoice '",
                                p.invoice_id(), "' in ", cur));
        }
        return absl::OkStatus();
      }));
      r->account = account;
      r->invoice = invoice;
      return absl::OkStatus();
    }
    case v1::Event::kActivity: {
      const auto& p = e.activity();
      uint32_t account;
      RETURN_IF_ERROR(NeedAccount(v, "activity.account_id", p.account_id(), &account));
      uint32_t manager;
      RETURN_IF_ERROR(NeedManager(v, "activity.manager_id", p.manager_id(), &manager));
      if (p.kind() == v1::ACTIVITY_KIND_UNSPECIFIED || !v1::ActivityKind_IsValid(p.kind())) {
        return Invalid("activity.kind", "must be call, email, messenger or meeting");
      }
      if (p.direction() == v1::DIRECTION_UNSPECIFIED || !v1::Direction_IsValid(p.direction())) {
        return Invalid("activity.direction", "must be outbound or inbound");
      }
      r->account = account;
      r->manager = manager;
      return absl::OkStatus();
    }
    case v1::Event::kFeedbackReceived: {
      const auto& p = e.feedback_received();
      uint32_t account;
      RETURN_IF_ERROR(NeedAccount(v, "feedback_received.account_id", p.account_id(), &account));
      if (p.score() < 0 || p.score() > 10) {
        return Invalid("feedback_received.score", StrCat(p.score(), " is outside 0..10"));
      }
      RETURN_IF_ERROR(Optional(
          p.order_id(), [&] { return NeedOrder(v, "feedback_received.order_id", p.order_id()); }));
      r->account = account;
      return absl::OkStatus();
    }
    case v1::Event::kComplaintOpened: {
      const auto& p = e.complaint_opened();
      RETURN_IF_ERROR(CheckId("complaint_opened.complaint_id", p.complaint_id()));
      uint32_t unused_index, unused_account;
      const Key key = KeyOf(p.complaint_id());
      if (v.FindComplaint(key, &unused_index, &unused_account)) {
        return Exists("complaint_opened.complaint_id", "complaint", p.complaint_id());
      }
      uint32_t account;
      RETURN_IF_ERROR(NeedAccount(v, "complaint_opened.account_id", p.account_id(), &account));
      if (p.severity() == v1::SEVERITY_UNSPECIFIED || !v1::Severity_IsValid(p.severity())) {
        return Invalid("complaint_opened.severity", "must be low, medium, high or critical");
      }
      r->account = account;
      r->complaint = v.NextComplaint();
      if (o != nullptr) {
        o->complaints.emplace(key, BatchOverlay::ComplaintInfo{r->complaint, account});
        ++o->new_complaints;
      }
      return absl::OkStatus();
    }
    case v1::Event::kComplaintResolved: {
      const auto& id = e.complaint_resolved().complaint_id();
      RETURN_IF_ERROR(CheckId("complaint_resolved.complaint_id", id));
      uint32_t complaint, account;
      if (!v.FindComplaint(KeyOf(id), &complaint, &account)) {
        return NotFound("complaint_resolved.complaint_id", "complaint", id);
      }
      r->account = account;
      r->complaint = complaint;
      return absl::OkStatus();
    }
    case v1::Event::kCaseStudyPublished: {
      const auto& p = e.case_study_published();
      uint32_t account;
      RETURN_IF_ERROR(NeedAccount(v, "case_study_published.account_id", p.account_id(), &account));
      uint32_t deal = kNone;
      RETURN_IF_ERROR(Optional(p.deal_id(), [&]() -> absl::Status {
        View::Deal d;
        RETURN_IF_ERROR(NeedDeal(v, "case_study_published.deal_id", p.deal_id(), &d));
        deal = d.index;
        return absl::OkStatus();
      }));
      r->account = account;
      r->deal = deal;
      return absl::OkStatus();
    }
    case v1::Event::kTaskCompleted: {
      const auto& id = e.task_completed().task_id();
      RETURN_IF_ERROR(CheckId("task_completed.task_id", id));
      if (!v.HasTask(id)) return NotFound("task_completed.task_id", "task", id);
      return absl::OkStatus();
    }
    case v1::Event::PAYLOAD_NOT_SET:
      break;
  }
  return Invalid("payload", "no event type is set");
}

}  // namespace

void BatchOverlay::Clear() {
  accounts.clear();
  managers.clear();
  teams.clear();
  deals.clear();
  orders.clear();
  invoices.clear();
  complaints.clear();
  event_ids.clear();
  new_accounts = new_deals = new_orders = new_invoices = new_complaints = 0;
}

namespace {

// The checks of an event whose id is new: its time and payload. Fills `refs`
// (when given) but for stored_id.
absl::Status ValidateNew(const v1::Event& event, size_t id_hash, const EngineState& state,
                         BatchOverlay* overlay, EventRefs* refs) {
  RETURN_IF_ERROR(CheckTime("occurred_at_us", event.occurred_at_us(), false));
  EventRefs local;
  EventRefs* r = refs != nullptr ? refs : &local;
  *r = EventRefs();
  r->id_hash = id_hash;
  return ValidatePayload(event, View(state, overlay), overlay, r);
}

}  // namespace

uint64_t EventFingerprint(const v1::Event& event) {
  // Protobuf's bytes, written by hand where possible (lib/ingest/fingerprint.h).
  return FingerprintEvent(event);
}

absl::Status ValidateEvent(const v1::Event& event, uint64_t fingerprint, const EngineState& state,
                           BatchOverlay* overlay, Verdict* verdict, EventRefs* refs) {
  RETURN_IF_ERROR(CheckId("event_id", event.event_id()));
  const size_t id_hash = EventIdLog::Hash(event.event_id());
  // Recording ids: a new id goes into the log with the one probe that finds
  // it new, and comes out again if the event is refused below.
  EventIdLog* const record = overlay != nullptr ? overlay->record_ids : nullptr;
  absl::string_view stored_id;
  const uint64_t* seen = record != nullptr
                             ? record->FindOrAdd(event.event_id(), id_hash, fingerprint, &stored_id)
                             : state.event_ids.Find(event.event_id(), id_hash);
  if (seen == nullptr && overlay != nullptr && record == nullptr) {
    auto it = overlay->event_ids.find(BatchOverlay::HashedId{event.event_id(), id_hash});
    if (it != overlay->event_ids.end()) seen = &it->second;
  }
  if (seen != nullptr) {
    if (*seen != fingerprint) {
      return absl::AlreadyExistsError(
          "field 'event_id': conflict: an event with this id and other content was "
          "accepted before");
    }
    *verdict = Verdict::kDuplicate;
    return absl::OkStatus();
  }
  absl::Status st = ValidateNew(event, id_hash, state, overlay, refs);
  if (!st.ok()) {
    if (record != nullptr) record->Truncate(record->size() - 1);
    return st;
  }
  if (record != nullptr) {
    if (refs != nullptr) refs->stored_id = stored_id;
  } else if (overlay != nullptr) {
    overlay->event_ids.emplace(BatchOverlay::HashedId{event.event_id(), id_hash}, fingerprint);
  }
  *verdict = Verdict::kApply;
  return absl::OkStatus();
}

}  // namespace rapport
