#include "lib/ingest/validate.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
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

bool ValidIdBytes(absl::string_view id) {
  if (id.empty() || id.size() > kMaxIdBytes) return false;
  // Branch-free so the compiler vectorizes it: ids are checked several times
  // per event.
  bool bad = false;
  for (unsigned char c : id) bad |= (c < 0x20) | (c == 0x7f);
  return !bad;
}

absl::Status CheckId(absl::string_view field, absl::string_view id) {
  if (id.empty()) return Invalid(field, "is required");
  if (!ValidIdBytes(id)) {
    return Invalid(field, StrCat("must be 1..", kMaxIdBytes,
                                 " bytes without control characters"));
  }
  if (!IsValidUtf8(id)) return Invalid(field, "is not valid UTF-8");
  return absl::OkStatus();
}

absl::Status CheckText(absl::string_view field, absl::string_view text) {
  if (text.size() > kMaxTextBytes) {
    return Invalid(field, StrCat("is ", text.size(), " bytes; the limit is ", kMaxTextBytes));
  }
  if (!IsValidUtf8(text)) return Invalid(field, "is not valid UTF-8");
  return absl::OkStatus();
}

bool ValidTime(int64_t t) { return t >= kMinTimeUs && t < kMaxTimeUs; }

absl::Status CheckTime(absl::string_view field, int64_t t, bool required) {
  if (t == 0 && required) return Invalid(field, "is required");
  if (!ValidTime(t)) {
    return Invalid(field, StrCat(t, " is outside years 1970..9999 (microseconds since the epoch)"));
  }
  return absl::OkStatus();
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

// Lookups that see the state and the batch so far.
class View {
 public:
  View(const EngineState& s, const BatchOverlay* o) : s_(s), o_(o) {}

  v1::AccountKind AccountKind(absl::string_view id) const {
    if (o_ != nullptr) {
      auto it = o_->accounts.find(id);
      if (it != o_->accounts.end()) return it->second;
    }
    const v1::Account* a = s_.accounts.Find(id);
    return a == nullptr ? v1::ACCOUNT_KIND_UNSPECIFIED : a->kind();
  }
  bool HasManager(absl::string_view id) const {
    return s_.managers.Find(id) != nullptr || (o_ != nullptr && o_->managers.contains(id));
  }
  bool HasTeam(absl::string_view id) const {
    return s_.teams.Find(id) != nullptr || (o_ != nullptr && o_->teams.contains(id));
  }
  // The deal's pipeline and account, or false.
  bool Deal(absl::string_view id, const PipelineInfo** pipeline,
            absl::string_view* account) const {
    if (const v1::Deal* d = s_.deals.Find(id)) {
      *pipeline = s_.pipelines.Find(d->pipeline_id());
      *account = d->account_id();
      return true;
    }
    if (o_ != nullptr) {
      auto it = o_->deals.find(id);
      if (it != o_->deals.end()) {
        *pipeline = it->second.pipeline;
        *account = it->second.account_id;
        return true;
      }
    }
    return false;
  }
  bool HasOrder(absl::string_view id) const {
    return s_.orders.Find(id) != nullptr || (o_ != nullptr && o_->orders.contains(id));
  }
  // The invoice's currency, or nullptr.
  bool InvoiceCurrency(absl::string_view id, absl::string_view* currency) const {
    if (const v1::Invoice* inv = s_.invoices.Find(id)) {
      *currency = inv->amount().currency();
      return true;
    }
    if (o_ != nullptr) {
      auto it = o_->invoices.find(id);
      if (it != o_->invoices.end()) {
        *currency = it->second;
        return true;
      }
    }
    return false;
  }
  bool HasComplaint(absl::string_view id) const {
    return s_.complaints.Find(id) != nullptr || (o_ != nullptr && o_->complaints.contains(id));
  }
  bool HasTask(absl::string_view id) const {
    const rules::StoredAction* a = s_.actions.Find(id);
    return a != nullptr && a->kind == v1::ACTION_KIND_CREATE_TASK;
  }
  const Pipelines& pipelines() const { return s_.pipelines; }

 private:
  const EngineState& s_;
  const BatchOverlay* o_;
};

absl::Status NeedAccount(const View& v, absl::string_view field, absl::string_view id) {
  if (absl::Status st = CheckId(field, id); !st.ok()) return st;
  if (v.AccountKind(id) == v1::ACCOUNT_KIND_UNSPECIFIED) return NotFound(field, "account", id);
  return absl::OkStatus();
}

absl::Status NeedPartner(const View& v, absl::string_view field, absl::string_view id) {
  if (absl::Status st = NeedAccount(v, field, id); !st.ok()) return st;
  if (v.AccountKind(id) != v1::ACCOUNT_KIND_PARTNER) {
    return absl::FailedPreconditionError(
        StrCat("field '", field, "': account '", id, "' is a client, not a partner"));
  }
  return absl::OkStatus();
}

absl::Status NeedManager(const View& v, absl::string_view field, absl::string_view id) {
  if (absl::Status st = CheckId(field, id); !st.ok()) return st;
  if (!v.HasManager(id)) return NotFound(field, "manager", id);
  return absl::OkStatus();
}

absl::Status NeedOrder(const View& v, absl::string_view field, absl::string_view id) {
  if (absl::Status st = CheckId(field, id); !st.ok()) return st;
  if (!v.HasOrder(id)) return NotFound(field, "order", id);
  return absl::OkStatus();
}

absl::Status NeedDeal(const View& v, absl::string_view field, absl::string_view id,
                      const PipelineInfo** pipeline, absl::string_view* account) {
  if (absl::Status st = CheckId(field, id); !st.ok()) return st;
  if (!v.Deal(id, pipeline, account)) return NotFound(field, "deal", id);
  return absl::OkStatus();
}

// Optional references: empty is fine, otherwise it must resolve.
template <typename Check>
absl::Status Optional(absl::string_view id, Check check) {
  return id.empty() ? absl::OkStatus() : check();
}

#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    if (absl::Status _st = (expr); !_st.ok()) return _st; \
  } while (0)

absl::Status ValidatePayload(const v1::Event& e, const View& v, BatchOverlay* o) {
  switch (e.payload_case()) {
    case v1::Event::kAccountUpserted: {
      const auto& p = e.account_upserted();
      RETURN_IF_ERROR(CheckId("account_upserted.account_id", p.account_id()));
      if (p.kind() != v1::ACCOUNT_KIND_CLIENT && p.kind() != v1::ACCOUNT_KIND_PARTNER) {
        return Invalid("account_upserted.kind", "must be ACCOUNT_KIND_CLIENT or ACCOUNT_KIND_PARTNER");
      }
      v1::AccountKind existing = v.AccountKind(p.account_id());
      if (existing != v1::ACCOUNT_KIND_UNSPECIFIED && existing != p.kind()) {
        return absl::FailedPreconditionError(
            StrCat("field 'account_upserted.kind': account '", p.account_id(), "' is a ",
                   v1::AccountKind_Name(existing), "; the kind of an account cannot change"));
      }
      RETURN_IF_ERROR(CheckText("account_upserted.name", p.name()));
      RETURN_IF_ERROR(CheckText("account_upserted.segment", p.segment()));
      RETURN_IF_ERROR(Optional(p.owner_id(), [&] {
        return NeedManager(v, "account_upserted.owner_id", p.owner_id());
      }));
      RETURN_IF_ERROR(Optional(p.team_id(), [&]() -> absl::Status {
        RETURN_IF_ERROR(CheckId("account_upserted.team_id", p.team_id()));
        if (!v.HasTeam(p.team_id())) return NotFound("account_upserted.team_id", "team", p.team_id());
        return absl::OkStatus();
      }));
      if (!v1::Tier_IsValid(p.tier())) return Invalid("account_upserted.tier", "unknown tier");
      if (p.preferred_channel() == v1::CHANNEL_PHONE || !v1::Channel_IsValid(p.preferred_channel())) {
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
      if (o != nullptr) o->accounts.emplace(p.account_id(), p.kind());
      return absl::OkStatus();
    }
    case v1::Event::kManagerUpserted: {
      const auto& p = e.manager_upserted();
      RETURN_IF_ERROR(CheckId("manager_upserted.manager_id", p.manager_id()));
      RETURN_IF_ERROR(CheckText("manager_upserted.name", p.name()));
      RETURN_IF_ERROR(Optional(p.team_id(), [&]() -> absl::Status {
        RETURN_IF_ERROR(CheckId("manager_upserted.team_id", p.team_id()));
        if (!v.HasTeam(p.team_id())) return NotFound("manager_upserted.team_id", "team", p.team_id());
        return absl::OkStatus();
      }));
      RETURN_IF_ERROR(Optional(p.grade(), [&] { return CheckId("manager_upserted.grade", p.grade()); }));
      RETURN_IF_ERROR(CheckTime("manager_upserted.hired_at_us", p.hired_at_us(), false));
      if (o != nullptr) o->managers.insert(p.manager_id());
      return absl::OkStatus();
    }
    case v1::Event::kTeamUpserted: {
      const auto& p = e.team_upserted();
      RETURN_IF_ERROR(CheckId("team_upserted.team_id", p.team_id()));
      RETURN_IF_ERROR(CheckText("team_upserted.name", p.name()));
      RETURN_IF_ERROR(Optional(p.lead_id(), [&] {
        return NeedManager(v, "team_upserted.lead_id", p.lead_id());
      }));
      if (p.segments_size() > static_cast<int>(kMaxSegmentsPerTeam)) {
        return Invalid("team_upserted.segments",
                       StrCat(p.segments_size(), " segments; the limit is ", kMaxSegmentsPerTeam));
      }
      for (int i = 0; i < p.segments_size(); ++i) {
        RETURN_IF_ERROR(CheckText(StrCat("team_upserted.segments[", i, "]"), p.segments(i)));
      }
      if (o != nullptr) o->teams.insert(p.team_id());
      return absl::OkStatus();
    }
    case v1::Event::kLeadCreated: {
      const auto& p = e.lead_created();
      RETURN_IF_ERROR(CheckId("lead_created.deal_id", p.deal_id()));
      const PipelineInfo* pl = nullptr;
      absl::string_view acc;
      if (v.Deal(p.deal_id(), &pl, &acc)) return Exists("lead_created.deal_id", "deal", p.deal_id());
      RETURN_IF_ERROR(NeedAccount(v, "lead_created.account_id", p.account_id()));
      if (!p.pipeline_id().empty()) {
        pl = v.pipelines().Find(p.pipeline_id());
        if (pl == nullptr) return NotFound("lead_created.pipeline_id", "pipeline", p.pipeline_id());
      } else {
        v1::AccountKind kind = v.AccountKind(p.account_id());
        pl = v.pipelines().DefaultFor(kind);
        if (pl == nullptr) {
          return absl::FailedPreconditionError(
              StrCat("field 'lead_created.pipeline_id': no default pipeline for ",
                     v1::AccountKind_Name(kind), "; name one"));
        }
      }
      RETURN_IF_ERROR(Optional(p.source_partner_id(), [&] {
        return NeedPartner(v, "lead_created.source_partner_id", p.source_partner_id());
      }));
      if (o != nullptr) o->deals.emplace(p.deal_id(), BatchOverlay::DealInfo{pl, p.account_id()});
      return absl::OkStatus();
    }
    case v1::Event::kDealStageChanged: {
      const auto& p = e.deal_stage_changed();
      const PipelineInfo* pl = nullptr;
      absl::string_view acc;
      RETURN_IF_ERROR(NeedDeal(v, "deal_stage_changed.deal_id", p.deal_id(), &pl, &acc));
      if (p.to_stage().empty()) return Invalid("deal_stage_changed.to_stage", "is required");
      if (pl->StageIndex(p.to_stage()) < 0) {
        return Invalid("deal_stage_changed.to_stage",
                       StrCat("'", p.to_stage(), "' is not a stage of pipeline '",
                              pl->pipeline.id(), "'"));
      }
      return absl::OkStatus();
    }
    case v1::Event::kDealWon: {
      const PipelineInfo* pl = nullptr;
      absl::string_view acc;
      return NeedDeal(v, "deal_won.deal_id", e.deal_won().deal_id(), &pl, &acc);
    }
    case v1::Event::kDealLost: {
      const PipelineInfo* pl = nullptr;
      absl::string_view acc;
      RETURN_IF_ERROR(NeedDeal(v, "deal_lost.deal_id", e.deal_lost().deal_id(), &pl, &acc));
      return CheckText("deal_lost.reason", e.deal_lost().reason());
    }
    case v1::Event::kPartnerAgreed:
      return NeedPartner(v, "partner_agreed.account_id", e.partner_agreed().account_id());
    case v1::Event::kPartnerChurned:
      return NeedPartner(v, "partner_churned.account_id", e.partner_churned().account_id());
    case v1::Event::kAccountChurned:
      RETURN_IF_ERROR(NeedAccount(v, "account_churned.account_id", e.account_churned().account_id()));
      return CheckText("account_churned.reason", e.account_churned().reason());
    case v1::Event::kOrderPlaced: {
      const auto& p = e.order_placed();
      RETURN_IF_ERROR(CheckId("order_placed.order_id", p.order_id()));
      if (v.HasOrder(p.order_id())) return Exists("order_placed.order_id", "order", p.order_id());
      RETURN_IF_ERROR(NeedAccount(v, "order_placed.account_id", p.account_id()));
      RETURN_IF_ERROR(Optional(p.deal_id(), [&]() -> absl::Status {
        const PipelineInfo* pl = nullptr;
        absl::string_view acc;
        RETURN_IF_ERROR(NeedDeal(v, "order_placed.deal_id", p.deal_id(), &pl, &acc));
        if (acc != p.account_id()) {
          return Invalid("order_placed.deal_id",
                         StrCat("deal '", p.deal_id(), "' belongs to account '", acc, "'"));
        }
        return absl::OkStatus();
      }));
      if (!p.has_amount()) return Invalid("order_placed.amount", "is required");
      RETURN_IF_ERROR(CheckMoney("order_placed.amount", p.amount()));
      RETURN_IF_ERROR(CheckTime("order_placed.due_at_us", p.due_at_us(), false));
      if (o != nullptr) o->orders.insert(p.order_id());
      return absl::OkStatus();
    }
    case v1::Event::kOrderDelayed: {
      const auto& p = e.order_delayed();
      RETURN_IF_ERROR(NeedOrder(v, "order_delayed.order_id", p.order_id()));
      RETURN_IF_ERROR(CheckTime("order_delayed.new_due_at_us", p.new_due_at_us(), true));
      return CheckText("order_delayed.reason", p.reason());
    }
    case v1::Event::kOrderCompleted:
      return NeedOrder(v, "order_completed.order_id", e.order_completed().order_id());
    case v1::Event::kInvoiceIssued: {
      const auto& p = e.invoice_issued();
      RETURN_IF_ERROR(CheckId("invoice_issued.invoice_id", p.invoice_id()));
      absl::string_view existing;
      if (v.InvoiceCurrency(p.invoice_id(), &existing)) {
        return Exists("invoice_issued.invoice_id", "invoice", p.invoice_id());
      }
      RETURN_IF_ERROR(NeedAccount(v, "invoice_issued.account_id", p.account_id()));
      RETURN_IF_ERROR(Optional(p.order_id(), [&] {
        return NeedOrder(v, "invoice_issued.order_id", p.order_id());
      }));
      if (!p.has_amount()) return Invalid("invoice_issued.amount", "is required");
      RETURN_IF_ERROR(CheckMoney("invoice_issued.amount", p.amount()));
      RETURN_IF_ERROR(CheckTime("invoice_issued.due_at_us", p.due_at_us(), true));
      if (o != nullptr) o->invoices.emplace(p.invoice_id(), p.amount().currency());
      return absl::OkStatus();
    }
    case v1::Event::kPaymentReceived: {
      const auto& p = e.payment_received();
      RETURN_IF_ERROR(NeedAccount(v, "payment_received.account_id", p.account_id()));
      if (!p.has_amount()) return Invalid("payment_received.amount", "is required");
      RETURN_IF_ERROR(CheckMoney("payment_received.amount", p.amount()));
      RETURN_IF_ERROR(Optional(p.order_id(), [&] {
        return NeedOrder(v, "payment_received.order_id", p.order_id());
      }));
      return Optional(p.invoice_id(), [&]() -> absl::Status {
        RETURN_IF_ERROR(CheckId("payment_received.invoice_id", p.invoice_id()));
        absl::string_view cur;
        if (!v.InvoiceCurrency(p.invoice_id(), &cur)) {
          return NotFound("payment_received.invoice_id", "invoice", p.invoice_id());
        }
        if (cur != p.amount().currency()) {
          return Invalid("payment_received.amount.currency",
                         StrCat("'", p.amount().currency(), "' differs from invoice '",
                                p.invoice_id(), "' in ", cur));
        }
        return absl::OkStatus();
      });
    }
    case v1::Event::kActivity: {
      const auto& p = e.activity();
      RETURN_IF_ERROR(NeedAccount(v, "activity.account_id", p.account_id()));
      RETURN_IF_ERROR(NeedManager(v, "activity.manager_id", p.manager_id()));
      if (p.kind() == v1::ACTIVITY_KIND_UNSPECIFIED || !v1::ActivityKind_IsValid(p.kind())) {
        return Invalid("activity.kind", "must be call, email, messenger or meeting");
      }
      if (p.direction() == v1::DIRECTION_UNSPECIFIED || !v1::Direction_IsValid(p.direction())) {
        return Invalid("activity.direction", "must be outbound or inbound");
      }
      return absl::OkStatus();
    }
    case v1::Event::kFeedbackReceived: {
      const auto& p = e.feedback_received();
      RETURN_IF_ERROR(NeedAccount(v, "feedback_received.account_id", p.account_id()));
      if (p.score() < 0 || p.score() > 10) {
        return Invalid("feedback_received.score", StrCat(p.score(), " is outside 0..10"));
      }
      return Optional(p.order_id(), [&] {
        return NeedOrder(v, "feedback_received.order_id", p.order_id());
      });
    }
    case v1::Event::kComplaintOpened: {
      const auto& p = e.complaint_opened();
      RETURN_IF_ERROR(CheckId("complaint_opened.complaint_id", p.complaint_id()));
      if (v.HasComplaint(p.complaint_id())) {
        return Exists("complaint_opened.complaint_id", "complaint", p.complaint_id());
      }
      RETURN_IF_ERROR(NeedAccount(v, "complaint_opened.account_id", p.account_id()));
      if (p.severity() == v1::SEVERITY_UNSPECIFIED || !v1::Severity_IsValid(p.severity())) {
        return Invalid("complaint_opened.severity", "must be low, medium, high or critical");
      }
      if (o != nullptr) o->complaints.insert(p.complaint_id());
      return absl::OkStatus();
    }
    case v1::Event::kComplaintResolved: {
      const auto& id = e.complaint_resolved().complaint_id();
      RETURN_IF_ERROR(CheckId("complaint_resolved.complaint_id", id));
      if (!v.HasComplaint(id)) return NotFound("complaint_resolved.complaint_id", "complaint", id);
      return absl::OkStatus();
    }
    case v1::Event::kCaseStudyPublished: {
      const auto& p = e.case_study_published();
      RETURN_IF_ERROR(NeedAccount(v, "case_study_published.account_id", p.account_id()));
      return Optional(p.deal_id(), [&] {
        const PipelineInfo* pl = nullptr;
        absl::string_view acc;
        return NeedDeal(v, "case_study_published.deal_id", p.deal_id(), &pl, &acc);
      });
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
}

uint64_t EventFingerprint(const v1::Event& event) {
  // Serializing into a reused buffer avoids a string's growth and zeroing;
  // events are small, so the buffer rarely grows.
  thread_local std::vector<uint8_t> buffer(4096);
  const size_t size = event.ByteSizeLong();
  if (buffer.size() < size) buffer.resize(size);
  event.SerializeWithCachedSizesToArray(buffer.data());
  return Fingerprint64(absl::string_view(reinterpret_cast<const char*>(buffer.data()), size));
}

absl::Status ValidateEvent(const v1::Event& event, uint64_t fingerprint,
                           const EngineState& state, BatchOverlay* overlay,
                           Verdict* verdict) {
  RETURN_IF_ERROR(CheckId("event_id", event.event_id()));
  const uint64_t* seen = state.event_ids.Find(event.event_id());
  if (seen == nullptr && overlay != nullptr) {
    auto it = overlay->event_ids.find(event.event_id());
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
  RETURN_IF_ERROR(CheckTime("occurred_at_us", event.occurred_at_us(), false));
  RETURN_IF_ERROR(ValidatePayload(event, View(state, overlay), overlay));
  if (overlay != nullptr) overlay->event_ids.emplace(event.event_id(), fingerprint);
  *verdict = Verdict::kApply;
  return absl::OkStatus();
}

}  // namespace rapport
