#include "lib/kpi/ingest.h"

#include <algorithm>
#include <string>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/strings/str_cat.h"
#include "lib/kpi/cells.h"
#include "lib/util/parallel.h"
#include "rapport/engine.h"

namespace rapport::kpi {
namespace {

bool StampLess(const Stamp& a, const Stamp& b) { return a < b; }

// The engine's rows Sync catches the store up with: accounts, deals and
// invoices together (the tables only grow, so an equal sum is equal counts).
size_t SyncedRows(const EngineState& s) {
  return s.accounts.size() + s.deals.size() + s.invoices.size();
}

// Sync's work when the engine has rows the store has not seen (or on the
// first call). Out of line: most events create no row.
ABSL_ATTRIBUTE_NOINLINE void CatchUp(EngineState* s) {
  FactStore& st = s->kpi;
  if (st.stage_offset.empty()) {
    int32_t off = 0;
    for (const PipelineInfo& p : s->pipelines.all()) {
      st.stage_offset.push_back(off);
      off += p.size();
      for (int i = 0; i < p.size(); ++i) {
        st.stage_sla.push_back(i == p.size() - 1 ? 0 : std::max<int64_t>(0, p.stage(i).sla_us()));
      }
    }
    st.stage_offset.push_back(off);
  }
  while (st.accounts.size() < s->accounts.size()) {
    st.accounts.emplace_back().kind =
        static_cast<uint8_t>(KindOfAccount(*s, static_cast<uint32_t>(st.accounts.size())));
  }
  while (st.invoice_payments.size() < s->invoices.size()) {
    const v1::Invoice& inv = s->invoices.at(static_cast<uint32_t>(st.invoice_payments.size()));
    InvoiceData& d = st.invoices.emplace_back();
    d.issued = inv.issued_at_us();
    d.due = inv.due_at_us();
    d.amount = inv.amount().amount_minor();
    d.account = s->accounts.IndexOf(inv.account_id());
    d.currency = st.strings.Intern(inv.amount().currency());
    st.invoice_payments.emplace_back();
    st.cells->OnInvoice(st, static_cast<uint32_t>(st.invoices.size() - 1));
  }
  while (st.deals.size() < s->deals.size()) {
    const uint32_t idx = static_cast<uint32_t>(st.deals.size());
    const v1::Deal& d = s->deals.at(idx);
    // The engine's deal links (account and pipeline by index) when it has
    // them, instead of hashing the two ids again.
    const DealLink link = LinkOfDeal(*s, idx);
    DealData& dd = st.deals.emplace_back();
    dd.account = link.account;
    dd.source_partner = st.strings.Intern(d.source_partner_id());
    dd.pipeline = link.pipeline;
    dd.created_at = d.created_at_us();
  }
  st.synced_rows = SyncedRows(*s);
}

// Brings the store's entity tables up to the engine's. Runs for every event:
// the check reads the engine's vector sizes and one number, not the store's
// deques (a deque's size() is a dozen instructions; three of them were 2 % of
// ingest).
inline void Sync(EngineState* s) {
  if (ABSL_PREDICT_TRUE(!s->kpi.stage_offset.empty() && SyncedRows(*s) == s->kpi.synced_rows)) {
    return;
  }
  CatchUp(s);
}

// The account's attribution history and current attributes, interned.
// `old` is the history as it was synced last (empty: none). The engine only
// ever inserts into a history (an upsert adds its entry after every entry
// not later), so the entries of `old` are still there, in the same order,
// with the same content; they are copied rather than interned again, and
// only the new ones are hashed (a long history cost three hashes per entry
// on every upsert).
void SyncAccount(uint32_t idx, const Timeline<AttrEntry>& old, EngineState* s) {
  FactStore& st = s->kpi;
  AccountData& a = st.accounts[idx];
  a.attr.clear();
  const std::vector<v1::Attribution>& h = s->attributions[idx];
  a.attr.reserve(h.size());
  size_t j = 0;
  // An entry mostly keeps the previous one's team and segment (and often its
  // owner): each field's last id is Intern's hint.
  uint32_t owner = 0, team = 0, segment = 0;
  for (const v1::Attribution& x : h) {
    const Stamp since{x.since_us(), x.seq()};
    if (j < old.size() && old[j].since() == since) {
      a.attr.push_back(old[j++]);
      continue;
    }
    a.attr.push_back(AttrEntry{since, st.strings.Intern(x.owner_id(), &owner),
                               st.strings.Intern(x.team_id(), &team),
                               st.strings.Intern(x.segment(), &segment)});
  }
  const v1::Account& acc = s->accounts.at(idx);
  a.source_partner = st.strings.Intern(acc.source_partner_id());
  a.referred = !acc.referred_by().empty();
}

// The interned id of an activity's manager id. `manager` is the manager's
// row index (EventRefs::manager) or kNone: by the index, an activity costs
// one array read instead of hashing the id and probing the pool (about 140
// instructions; activities are over a quarter of a typical stream).
uint32_t ManagerString(absl::string_view id, uint32_t manager, FactStore* st) {
  if (manager < st->manager_strings.size() && st->manager_strings[manager] != 0) {
    return st->manager_strings[manager];
  }
  const uint32_t interned = st->strings.Intern(id);
  if (manager != EventRefs::kNone) {
    if (manager >= st->manager_strings.size()) st->manager_strings.resize(manager + 1, 0);
    st->manager_strings[manager] = interned;
  }
  return interned;
}

// Stores a fact and threads it into the timelines (not the cells); returns
// what it did to its deal's first win or loss.
FirstChange StoreFact(FactStore& st, FactKind kind, int64_t t, const Fact& f, int64_t order_seq) {
  FirstChange first = FirstChange::kNone;
  switch (kind) {
    case FactKind::kLead:
    case FactKind::kWon:
    case FactKind::kLost:
      // The deal holds the account (FactColumn::DerivedFromDeals).
      st.column(kind).Insert(t, Fact{f.value, 0, f.subject, f.aux});
      break;
    case FactKind::kStageEntry:
      break;
    default:
      st.column(kind).Insert(t, f);
      break;
  }
  switch (kind) {
    case FactKind::kStageEntry: {
      // The visit goes after every visit not later; the column stores only
      // the deal and the visit's index (FactColumn::DerivedFromDeals), so the
      // entries of the visits it lands before (late visits only) move on by
      // one, the last first (the column is searched by the old index).
      Timeline<Visit>& vs = st.deals[f.subject].visits;
      const Visit v{Stamp{t, f.value}, static_cast<int32_t>(f.aux)};
      size_t pos = vs.size();
      const Stamp at = v.at();
      while (pos > 0 && at < vs[pos - 1].at()) --pos;
      FactColumn& col = st.column(kind);
      for (size_t j = vs.size(); j-- > pos;) {
        col.SetAux(vs[j].t(), f.subject, static_cast<uint32_t>(j), static_cast<uint32_t>(j + 1));
      }
      vs.insert(vs.begin() + pos, v);
      col.Insert(t, Fact{0, 0, f.subject, static_cast<uint32_t>(pos)});
      break;
    }
    case FactKind::kWon:
    case FactKind::kLost: {
      Stamp& cur = kind == FactKind::kWon ? st.deals[f.subject].won : st.deals[f.subject].lost;
      const Stamp me{t, f.value};
      if (cur.t == kNever) {
        first = FirstChange::kFirst;
      } else if (me < cur) {
        first = FirstChange::kReplaced;
      }
      cur = std::min(cur, me, StampLess);
      // A deal's first close ends its stage history in nearly every case
      // (a reopened deal grows it again from here): the growth policy's
      // spare room is given back then, once per deal. After a restore the
      // visits are exactly reserved and this does nothing.
      if (first == FirstChange::kFirst) st.deals[f.subject].visits.shrink_to_fit();
      break;
    }
    case FactKind::kPartnerAgreed:
    case FactKind::kPartnerChurned:
    case FactKind::kAccountChurned: {
      AccountData& a = st.accounts[f.account];
      // Partners follow agreed/churned; clients follow account-churned.
      const bool partner = a.kind == v1::ACCOUNT_KIND_PARTNER;
      if (partner == (kind == FactKind::kAccountChurned)) break;
      InsertSorted(a.status, StatusEvent{Stamp{t, f.value}, kind == FactKind::kPartnerAgreed},
                   [](const StatusEvent& x, const StatusEvent& y) { return x.at < y.at; });
      break;
    }
    case FactKind::kOrderPlaced: {
      while (st.orders.size() <= f.subject) st.orders.emplace_back();
      st.orders[f.subject].account = f.account;
      st.orders[f.subject].placed = Stamp{t, order_seq};
      InsertSorted(st.accounts[f.account].orders, OrderRef{Stamp{t, order_seq}, f.subject},
                   [](const OrderRef& x, const OrderRef& y) { return x.at < y.at; });
      break;
    }
    case FactKind::kOrderCompleted:
      st.orders[f.subject].completed = true;
      InsertSorted(st.accounts[f.account].completed, t, [](int64_t x, int64_t y) { return x < y; });
      break;
    case FactKind::kPayment:
      if (f.subject != 0) {
        InsertSorted(st.invoice_payments[f.subject - 1], Payment{t, f.value},
                     [](const Payment& x, const Payment& y) { return x.t < y.t; });
      }
      break;
    case FactKind::kActivity:
      if (!ActivityInbound(f.aux)) {
        InsertSorted(st.accounts[f.account].outbound, t,
                     [](int64_t x, int64_t y) { return x < y; });
      }
      break;
    case FactKind::kFeedback:
      InsertSorted(st.accounts[f.account].feedback, FeedbackRef{t, static_cast<int32_t>(f.value)},
                   [](const FeedbackRef& x, const FeedbackRef& y) { return x.t < y.t; });
      break;
    case FactKind::kLead:
      break;
  }
  return first;
}

// Stores a fact, threads it into the timelines and tells the cells.
void Add(FactStore& st, FactKind kind, int64_t t, const Fact& f, int64_t order_seq) {
  st.cells->BeforeFact(st, kind, f);
  const FirstChange first = StoreFact(st, kind, t, f, order_seq);
  st.cells->OnFact(st, kind, t, f, first);
}

// Records the stage the deal entered by this event, if it entered one;
// returns whether that stage wins the deal. `stage` is the index of the stage
// the event should have entered (the lifecycle's choice: a lead's first
// stage, to_stage, the won stage): one compare of its id with the one the
// history holds instead of hashing that id; the hash settles a mismatch, so
// the answer never depends on the guess.
bool RecordEntry(uint32_t deal, int stage, int64_t t, int64_t seq, EngineState* s) {
  FactStore& st = s->kpi;
  const v1::Deal& d = s->deals.at(deal);
  DealData& dd = st.deals[deal];
  if (static_cast<size_t>(d.history_size()) <= dd.visits.size()) return false;
  const PipelineInfo& p = s->pipelines.all()[static_cast<size_t>(dd.pipeline)];
  const std::string& entered = d.history(d.history_size() - 1).stage();
  if (stage < 0 || stage >= p.size() || p.stage(stage).id() != entered) {
    stage = p.StageIndex(entered);
  }
  const uint32_t account = dd.account;
  Add(st, FactKind::kStageEntry, t, Fact{seq, account, deal, static_cast<uint32_t>(stage)}, 0);
  if (p.stage(stage).lost()) Add(st, FactKind::kLost, t, Fact{seq, account, deal, 0}, 0);
  if (p.stage(stage).won()) {
    Add(st, FactKind::kWon, t, Fact{seq, account, deal, 0}, 0);
    return true;
  }
  return false;
}

// Gives every timeline the facts of kinds [first_kind, end_kind) will fill
// exactly the room they need, and only those. Restore appends to them fact by
// fact, and growing each one realloc at a time was a third of reading the
// facts. Counts only entries in range: the checks come with the facts
// themselves. The deal kinds' part touches only the deals' visits, the
// rest's only the accounts' timelines and the invoices' payments, so a
// restore on two threads runs the two parts at once, each before its rows.
void ReserveTimelinesOfKinds(const v1::FactColumns& in, int first_kind, int end_kind,
                             FactStore* st) {
  if (in.kind_sizes_size() != kFactKinds) return;
  auto has = [&](FactKind k) {
    return static_cast<int>(k) >= first_kind && static_cast<int>(k) < end_kind;
  };
  const size_t accounts = st->accounts.size(), deals = st->deals.size();
  const size_t invoices = st->invoice_payments.size();
  const bool per_account_kinds = has(FactKind::kPartnerAgreed) || has(FactKind::kPartnerChurned) ||
                                 has(FactKind::kAccountChurned) || has(FactKind::kOrderPlaced) ||
                                 has(FactKind::kOrderCompleted) || has(FactKind::kActivity) ||
                                 has(FactKind::kFeedback);
  // Per account: orders, completed, outbound, feedback, status.
  enum { kOrders, kCompleted, kOutbound, kFeedback, kStatus, kPerAccount };
  std::vector<uint32_t> per_account(per_account_kinds ? accounts * kPerAccount : 0);
  std::vector<uint32_t> visits(has(FactKind::kStageEntry) ? deals : 0);
  std::vector<uint32_t> payments(has(FactKind::kPayment) ? invoices : 0);
  int row = 0;
  for (int k = 0; k < first_kind; ++k) row += static_cast<int>(in.kind_sizes(k));
  for (int k = first_kind; k < end_kind; ++k) {
    const FactKind kind = static_cast<FactKind>(k);
    const int end = row + static_cast<int>(in.kind_sizes(k));
    for (; row < end; ++row) {
      const uint32_t account = in.account(row);
      if (account >= accounts) continue;
      uint32_t* a = per_account_kinds ? &per_account[account * kPerAccount] : nullptr;
      switch (kind) {
        case FactKind::kStageEntry:
          if (in.subject(row) < deals) ++visits[in.subject(row)];
          break;
        case FactKind::kPartnerAgreed:
        case FactKind::kPartnerChurned:
        case FactKind::kAccountChurned:
          // As StoreFact: partners follow agreed/churned, clients churned.
          if ((st->accounts[account].kind == v1::ACCOUNT_KIND_PARTNER) !=
              (kind == FactKind::kAccountChurned)) {
            ++a[kStatus];
          }
          break;
        case FactKind::kOrderPlaced:
          ++a[kOrders];
          break;
        case FactKind::kOrderCompleted:
          ++a[kCompleted];
          break;
        case FactKind::kPayment:
          if (in.subject(row) != 0 && in.subject(row) <= invoices) ++payments[in.subject(row) - 1];
          break;
        case FactKind::kActivity:
          if (!ActivityInbound(in.aux(row))) ++a[kOutbound];
          break;
        case FactKind::kFeedback:
          ++a[kFeedback];
          break;
        default:
          break;
      }
    }
  }
  if (per_account_kinds) {
    for (size_t i = 0; i < accounts; ++i) {
      AccountData& d = st->accounts[i];
      const uint32_t* a = &per_account[i * kPerAccount];
      if (has(FactKind::kOrderPlaced)) d.orders.reserve(a[kOrders]);
      if (has(FactKind::kOrderCompleted)) d.completed.reserve(a[kCompleted]);
      if (has(FactKind::kActivity)) d.outbound.reserve(a[kOutbound]);
      if (has(FactKind::kFeedback)) d.feedback.reserve(a[kFeedback]);
      if (has(FactKind::kPartnerAgreed) || has(FactKind::kPartnerChurned) ||
          has(FactKind::kAccountChurned)) {
        d.status.reserve(a[kStatus]);
      }
    }
  }
  if (has(FactKind::kStageEntry)) {
    for (size_t i = 0; i < deals; ++i) st->deals[i].visits.reserve(visits[i]);
  }
  if (has(FactKind::kPayment)) {
    for (size_t i = 0; i < invoices; ++i) st->invoice_payments[i].reserve(payments[i]);
  }
}

}  // namespace

void RecordFacts(const v1::Event& e, int64_t seq, const EventRefs& refs, EngineState* s) {
  FactStore& st = s->kpi;
  const int64_t t = e.occurred_at_us();
  Sync(s);
  switch (e.payload_case()) {
    case v1::Event::kAccountUpserted: {
      const uint32_t idx = refs.account;
      const AccountData before = st.accounts[idx];
      SyncAccount(idx, before.attr, s);
      st.cells->OnAccountChange(st, idx, before);
      break;
    }
    case v1::Event::kLeadCreated: {
      const uint32_t deal = static_cast<uint32_t>(s->deals.size() - 1);
      Add(st, FactKind::kLead, t, Fact{0, st.deals[deal].account, deal, 0}, 0);
      RecordEntry(deal, 0, t, seq, s);
      break;
    }
    case v1::Event::kDealStageChanged:
      RecordEntry(refs.deal, refs.stage, t, seq, s);
      break;
    case v1::Event::kDealWon: {
      const uint32_t deal = refs.deal;
      const int won_stage =
          s->pipelines.all()[static_cast<size_t>(st.deals[deal].pipeline)].won_stage;
      if (!RecordEntry(deal, won_stage, t, seq, s)) {
        Add(st, FactKind::kWon, t, Fact{seq, st.deals[deal].account, deal, 0}, 0);
      }
      break;
    }
    case v1::Event::kDealLost: {
      const uint32_t deal = refs.deal;
      Add(st, FactKind::kLost, t, Fact{seq, st.deals[deal].account, deal, 0}, 0);
      break;
    }
    case v1::Event::kPartnerAgreed:
      Add(st, FactKind::kPartnerAgreed, t, Fact{seq, refs.account, 0, 0}, 0);
      break;
    case v1::Event::kPartnerChurned:
      Add(st, FactKind::kPartnerChurned, t, Fact{seq, refs.account, 0, 0}, 0);
      break;
    case v1::Event::kAccountChurned:
      Add(st, FactKind::kAccountChurned, t, Fact{seq, refs.account, 0, 0}, 0);
      break;
    case v1::Event::kOrderPlaced: {
      const auto& p = e.order_placed();
      Add(st, FactKind::kOrderPlaced, t,
          Fact{p.amount().amount_minor(), refs.account, refs.order,
               st.strings.Intern(p.amount().currency(), &st.last_currency)},
          seq);
      break;
    }
    case v1::Event::kOrderCompleted: {
      const uint32_t order = refs.order;
      if (order < st.orders.size() && !st.orders[order].completed) {
        Add(st, FactKind::kOrderCompleted, t, Fact{0, st.orders[order].account, order, 0}, 0);
      }
      break;
    }
    case v1::Event::kPaymentReceived: {
      const auto& p = e.payment_received();
      const uint32_t inv = refs.invoice == EventRefs::kNone ? 0 : refs.invoice + 1;
      Add(st, FactKind::kPayment, t,
          Fact{p.amount().amount_minor(), refs.account, inv,
               st.strings.Intern(p.amount().currency(), &st.last_currency)},
          0);
      break;
    }
    case v1::Event::kActivity: {
      const auto& p = e.activity();
      Add(st, FactKind::kActivity, t,
          Fact{0, refs.account, ManagerString(p.manager_id(), refs.manager, &st),
               ActivityCode(p.kind(), p.direction() == v1::DIRECTION_INBOUND)},
          0);
      break;
    }
    case v1::Event::kFeedbackReceived: {
      const auto& p = e.feedback_received();
      Add(st, FactKind::kFeedback, t, Fact{p.score(), refs.account, 0, 0}, 0);
      break;
    }
    default:
      break;
  }
}

void WriteFactColumns(const EngineState& s, v1::FactColumns* out) {
  const FactStore& st = s.kpi;
  for (size_t i = 0; i < st.strings.size(); ++i)
    out->add_strings(st.strings.at(static_cast<uint32_t>(i)));
  const size_t n = st.facts();
  out->mutable_occurred_at_delta_us()->Reserve(static_cast<int>(n));
  out->mutable_account()->Reserve(static_cast<int>(n));
  out->mutable_subject()->Reserve(static_cast<int>(n));
  out->mutable_aux()->Reserve(static_cast<int>(n));
  out->mutable_value()->Reserve(static_cast<int>(n));
  for (int k = 0; k < kFactKinds; ++k) {
    out->add_kind_sizes(st.columns[k].size());
    uint64_t prev = 0;
    st.columns[k].ForAll([&](int64_t t, const Fact& f) {
      out->add_occurred_at_delta_us(static_cast<uint64_t>(t) - prev);
      prev = static_cast<uint64_t>(t);
      out->add_account(f.account);
      out->add_subject(f.subject);
      out->add_aux(f.aux);
      out->add_value(f.value);
      if (k == static_cast<int>(FactKind::kOrderPlaced))
        out->add_order_seq(st.orders[f.subject].placed.seq);
    });
  }
}

absl::Status ReadFactColumns(const v1::FactColumns& in, EngineState* s) {
  if (absl::Status st = ReadFactColumnsHead(in, s, /*reserve=*/true); !st.ok()) return st;
  if (absl::Status st = ReadFactRows(in, 0, kFactKinds, s); !st.ok()) return st;
  // The cells learn of every fact at once: one lock instead of two per fact.
  s->kpi.cells->OnFactsLoaded(s->kpi);
  return absl::OkStatus();
}

absl::Status ReadFactColumnsHead(const v1::FactColumns& in, EngineState* s, bool reserve) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot: facts: ", what));
  };
  FactStore& st = s->kpi;
  if (in.strings_size() == 0 && in.kind_sizes_size() == 0 && in.occurred_at_us_size() == 0) {
    // An engine with no events at all.
  } else {
    if (in.strings_size() == 0 || !in.strings(0).empty()) return bad("strings[0] must be empty");
    for (int i = 1; i < in.strings_size(); ++i) {
      if (in.strings(i).size() > kMaxTextBytes)
        return bad(absl::StrCat("strings[", i, "] is too long"));
      // One hash per string: Intern hands back an older id for a string the
      // pool holds already, and adds nothing then.
      const uint32_t next = static_cast<uint32_t>(st.strings.size());
      if (st.strings.Intern(in.strings(i)) != next) {
        return bad(absl::StrCat("strings[", i, "] is repeated"));
      }
    }
    if (in.kind_sizes_size() != kFactKinds) return bad("kind_sizes must have 12 entries");
  }
  uint64_t total = 0;
  for (uint64_t k : in.kind_sizes()) {
    if (k > static_cast<uint64_t>(INT32_MAX) || total + k > static_cast<uint64_t>(INT32_MAX)) {
      return bad("kind_sizes are too large");
    }
    total += k;
  }
  const int n = static_cast<int>(total);
  // Times as differences (this engine's snapshots) or as they are (older
  // ones'); never both.
  const bool deltas = in.occurred_at_us_size() == 0;
  if (!deltas && in.occurred_at_delta_us_size() != 0) {
    return bad("both occurred_at_us and occurred_at_delta_us are present");
  }
  if ((deltas ? in.occurred_at_delta_us_size() : in.occurred_at_us_size()) != n ||
      in.account_size() != n || in.subject_size() != n || in.aux_size() != n ||
      in.value_size() != n) {
    return bad("columns differ in length from the sum of kind_sizes");
  }
  const uint64_t orders_expected = in.kind_sizes_size() == kFactKinds
                                       ? in.kind_sizes(static_cast<int>(FactKind::kOrderPlaced))
                                       : 0;
  if (static_cast<uint64_t>(in.order_seq_size()) != orders_expected) {
    return bad("order_seq does not match the order facts");
  }
  // A visit keeps its arrival seq in 56 bits (Visit): an engine that has
  // taken 2^56 events (or claims to) is beyond the store.
  if (s->events_accepted > Visit::kSeqLimit) return bad("events_accepted is beyond 2^56");
  Sync(s);
  const Timeline<AttrEntry> none;
  for (uint32_t i = 0; i < s->accounts.size(); ++i) SyncAccount(i, none, s);
  if (reserve) ReserveTimelinesOfKinds(in, 0, kFactKinds, &st);
  return absl::OkStatus();
}

absl::Status ReadFactRows(const v1::FactColumns& in, int first_kind, int end_kind, EngineState* s) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot: facts: ", what));
  };
  // No columns at all (an engine with no events): the head let that through.
  if (in.kind_sizes_size() != kFactKinds) return absl::OkStatus();
  FactStore& st = s->kpi;
  const bool deltas = in.occurred_at_us_size() == 0;
  const uint32_t strings = static_cast<uint32_t>(st.strings.size());
  int row = 0;
  for (int k = 0; k < first_kind; ++k) row += static_cast<int>(in.kind_sizes(k));
  // Only the order facts (one kind) read order_seq.
  int order_row = 0;
  // The counts the checks compare with, read once: the tables do not change
  // while the rows are read, but for the store's orders, which the placed
  // orders grow before the completed ones read it (so read for that kind
  // alone: on two threads the deal kinds' thread must not read it while the
  // other grows it). A deque's size() is a dozen instructions, and the
  // compiler cannot keep it across StoreFact's writes.
  const uint32_t accounts = static_cast<uint32_t>(s->accounts.size());
  const size_t deals = st.deals.size();
  const int64_t accepted = s->events_accepted;
  for (int k = first_kind; k < end_kind; ++k) {
    const FactKind kind = static_cast<FactKind>(k);
    const size_t store_orders = kind == FactKind::kOrderCompleted ? st.orders.size() : 0;
    int64_t prev_t = 0;
    for (uint64_t j = 0; j < in.kind_sizes(k); ++j, ++row) {
      // The sum wraps modulo 2^64 as the writer's difference did; a wrapped
      // or unsorted time fails the range and order check below.
      const int64_t t =
          deltas
              ? static_cast<int64_t>(static_cast<uint64_t>(prev_t) + in.occurred_at_delta_us(row))
              : in.occurred_at_us(row);
      Fact f{in.value(row), in.account(row), in.subject(row), in.aux(row)};
      auto where = [&] { return absl::StrCat("fact ", row, " (kind ", k, ")"); };
      if (t < kMinTimeUs || t >= kMaxTimeUs || t < prev_t) {
        return bad(absl::StrCat(where(), ": occurred_at_us out of range or order"));
      }
      prev_t = t;
      if (f.account >= accounts) return bad(absl::StrCat(where(), ": unknown account"));
      bool ok = true;
      int64_t order_seq = 0;
      switch (kind) {
        case FactKind::kLead:
        case FactKind::kStageEntry:
        case FactKind::kWon:
        case FactKind::kLost: {
          const DealData* d = f.subject < deals ? &st.deals[f.subject] : nullptr;
          ok = d != nullptr && d->account == f.account;
          if (ok && kind == FactKind::kStageEntry) {
            ok = f.aux <
                 static_cast<uint32_t>(s->pipelines.all()[static_cast<size_t>(d->pipeline)].size());
          }
          if (kind != FactKind::kLead) ok = ok && f.value >= 0 && f.value < accepted;
          break;
        }
        case FactKind::kPartnerAgreed:
        case FactKind::kPartnerChurned:
        case FactKind::kAccountChurned:
          ok = f.value >= 0 && f.value < accepted;
          break;
        case FactKind::kOrderPlaced:
          order_seq = in.order_seq(order_row++);
          // The order's account is the fact's when their ids are equal (ids
          // are unique in the table): a compare instead of a hash and probe.
          // (An order row is always at its id's index, so that needs no check.)
          ok = f.subject < s->orders.size() && f.aux < strings && f.value >= 0 && order_seq >= 0 &&
               order_seq < accepted &&
               s->orders.at(f.subject).account_id() == s->accounts.at(f.account).account_id();
          break;
        case FactKind::kOrderCompleted:
          ok = f.subject < store_orders && st.orders[f.subject].account == f.account &&
               !st.orders[f.subject].completed;
          break;
        case FactKind::kPayment:
          ok = f.subject <= s->invoices.size() && f.aux < strings && f.value >= 0;
          break;
        case FactKind::kActivity:
          ok = f.subject < strings && f.aux < 8;
          break;
        case FactKind::kFeedback:
          ok = f.value >= 0 && f.value <= 10;
          break;
      }
      if (!ok) return bad(absl::StrCat(where(), ": an index, code or value is out of range"));
      StoreFact(st, kind, t, f, order_seq);
    }
  }
  return absl::OkStatus();
}

absl::Status ReadFactRowsOnTwoThreads(const v1::FactColumns& in, EngineState* s) {
  // The deal kinds (lead, stage entry, won, lost: every write to a deal's
  // visits, win and loss) on this thread; the account, order, invoice and
  // activity kinds (each to its own timelines and columns; the completed
  // orders read the placed ones, so both go together) on the other. The
  // two share only reads of the tables, the string count and the synced
  // entity rows. A bad row of the first part precedes every row of the
  // second, so the first part's error is the one the one-thread order meets
  // first.
  constexpr int kSplit = static_cast<int>(FactKind::kPartnerAgreed);
  absl::Status deals, others;
  RunBoth(
      true,
      [&] {
        ReserveTimelinesOfKinds(in, kSplit, kFactKinds, &s->kpi);
        others = ReadFactRows(in, kSplit, kFactKinds, s);
      },
      [&] {
        ReserveTimelinesOfKinds(in, 0, kSplit, &s->kpi);
        deals = ReadFactRows(in, 0, kSplit, s);
      });
  if (!deals.ok()) return deals;
  if (!others.ok()) return others;
  s->kpi.cells->OnFactsLoaded(s->kpi);
  return absl::OkStatus();
}
}  // namespace rapport::kpi
