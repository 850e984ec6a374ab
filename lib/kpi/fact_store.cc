#include "lib/kpi/fact_store.h"
#include "lib/kpi/cells.h"

#include <algorithm>
#include <cstring>

namespace rapport::kpi {

uint32_t StringPool::Intern(absl::string_view s) {
  // Empty ids (no partner, team or segment) are common; "" is id 0.
  if (s.empty()) return 0;
  auto it = ids_.find(s);
  if (it != ids_.end()) return it->second;
  const uint32_t id = static_cast<uint32_t>(strings_.size());
  strings_.emplace_back(s);
  ids_.emplace(strings_.back(), id);
  return id;
}

uint32_t StringPool::Find(absl::string_view s) const {
  auto it = ids_.find(s);
  return it == ids_.end() ? kMissing : it->second;
}

size_t StringPool::MemoryBytes() const {
  size_t n = ids_.capacity() * (sizeof(std::string) + sizeof(uint32_t) + 1);
  for (const std::string& s : strings_) n += sizeof(std::string) * 2 + s.capacity();
  return n;
}

namespace {

// How many blocks a late fact may shift facts through (FactColumn::Insert).
constexpr size_t kChain = 8;

// What an absent field reads as.
alignas(64) constexpr int64_t kZero64[FactColumn::kMaxBlock] = {};
alignas(64) constexpr uint32_t kZero32[FactColumn::kMaxBlock] = {};
alignas(64) constexpr uint8_t kZero8[FactColumn::kMaxBlock] = {};

// A block's arrays, writable, in the order of its memory: t, then the
// present fields among value, account, subject, aux (aux8 when narrow, aux
// when wide).
struct Arrays {
  int64_t* t;
  int64_t* value;
  uint32_t* account;
  uint32_t* subject;
  uint32_t* aux;
  uint8_t* aux8;
};

// `cap` is a multiple of 8, so every array stays 8-byte aligned.
Arrays ArraysOf(unsigned char* mem, uint8_t fields, int cap) {
  const size_t k = static_cast<size_t>(cap);
  Arrays a{};
  unsigned char* p = mem;
  a.t = reinterpret_cast<int64_t*>(p);
  p += k * sizeof(int64_t);
  if (fields & kFieldValue) {
    a.value = reinterpret_cast<int64_t*>(p);
    p += k * sizeof(int64_t);
  }
  uint32_t** u32[] = {&a.account, &a.subject};
  const uint8_t bits[] = {kFieldAccount, kFieldSubject};
  for (int i = 0; i < 2; ++i) {
    if (fields & bits[i]) {
      *u32[i] = reinterpret_cast<uint32_t*>(p);
      p += k * sizeof(uint32_t);
    }
  }
  if (fields & kFieldAux) {
    if (fields & kFieldAuxWide) {
      a.aux = reinterpret_cast<uint32_t*>(p);
    } else {
      a.aux8 = p;
    }
  }
  return a;
}

// Points the block's read views at its arrays, or at zeros for the absent.
void View(FactColumn::Block* b, uint8_t fields) {
  const Arrays a = ArraysOf(b->mem.get(), fields, b->cap);
  b->t = a.t;
  b->value = a.value ? a.value : kZero64;
  b->account = a.account ? a.account : kZero32;
  b->subject = a.subject ? a.subject : kZero32;
  b->aux = a.aux;
  b->aux8 = a.aux ? nullptr : a.aux8 ? a.aux8 : kZero8;
}

uint8_t FieldsOf(const Fact& f) {
  return static_cast<uint8_t>((f.value != 0 ? kFieldValue : 0) |
                              (f.account != 0 ? kFieldAccount : 0) |
                              (f.subject != 0 ? kFieldSubject : 0) | (f.aux != 0 ? kFieldAux : 0) |
                              (f.aux > UINT8_MAX ? kFieldAuxWide : 0));
}

void Put(const Arrays& a, int i, int64_t t, const Fact& f) {
  a.t[i] = t;
  if (a.value) a.value[i] = f.value;
  if (a.account) a.account[i] = f.account;
  if (a.subject) a.subject[i] = f.subject;
  if (a.aux) a.aux[i] = f.aux;
  // Insert widened the column first if f.aux does not fit.
  if (a.aux8) a.aux8[i] = static_cast<uint8_t>(f.aux);
}

// Moves the elements [pos, n) of every present array to [pos + by, n + by).
void Shift(const Arrays& a, int pos, int n, int by) {
  const size_t m = static_cast<size_t>(n - pos);
  std::memmove(a.t + pos + by, a.t + pos, sizeof(int64_t) * m);
  if (a.value) std::memmove(a.value + pos + by, a.value + pos, sizeof(int64_t) * m);
  for (uint32_t* p : {a.account, a.subject, a.aux}) {
    if (p) std::memmove(p + pos + by, p + pos, sizeof(uint32_t) * m);
  }
  if (a.aux8) std::memmove(a.aux8 + pos + by, a.aux8 + pos, m);
}

}  // namespace

size_t FactColumn::BlockBytes(int cap) const {
  return static_cast<size_t>(cap) *
         (sizeof(int64_t) + ((fields_ & kFieldValue) ? sizeof(int64_t) : 0) +
          sizeof(uint32_t) *
              static_cast<size_t>(__builtin_popcount(fields_ & (kFieldAccount | kFieldSubject))) +
          ((fields_ & kFieldAux) ? ((fields_ & kFieldAuxWide) ? sizeof(uint32_t) : 1) : 0));
}

std::unique_ptr<FactColumn::Block> FactColumn::NewBlock(int cap) {
  auto b = std::make_unique<Block>();
  b->cap = cap;
  b->mem.reset(new unsigned char[BlockBytes(cap)]);
  View(b.get(), fields_);
  b->deals = deals_;
  b->visit_index = visit_index_;
  slots_ += static_cast<size_t>(cap);
  return b;
}

void FactColumn::DerivedFromDeals(const std::deque<DealData>* deals, bool visit_index) {
  deals_ = deals;
  visit_index_ = visit_index;
  for (auto& b : blocks_) {
    b->deals = deals;
    b->visit_index = visit_index;
  }
}

void FactColumn::SetAux(int64_t t, uint32_t subject, uint32_t from, uint32_t to) {
  // An absent aux array reads as shared zeros: it must be stored to change,
  // and wide to hold `to` past 255.
  if (const uint8_t need = static_cast<uint8_t>(kFieldAux | (to > UINT8_MAX ? kFieldAuxWide : 0));
      (need & ~fields_) != 0) {
    Widen(need);
  }
  for (size_t b = FirstBlock(t); b < blocks_.size(); ++b) {
    Block& blk = *blocks_[b];
    if (blk.n == 0 || blk.t[0] > t) return;
    for (int i = static_cast<int>(std::lower_bound(blk.t, blk.t + blk.n, t) - blk.t);
         i < blk.n && blk.t[i] == t; ++i) {
      if (blk.subject[i] == subject && blk.Aux(i) == from) {
        if (blk.aux != nullptr) {
          const_cast<uint32_t*>(blk.aux)[i] = to;
        } else {
          const_cast<uint8_t*>(blk.aux8)[i] = static_cast<uint8_t>(to);
        }
        return;
      }
    }
  }
}

void FactColumn::Widen(uint8_t add) {
  const uint8_t old = fields_;
  fields_ = static_cast<uint8_t>(fields_ | add);
  for (auto& b : blocks_) Relayout(b.get(), old, b->cap);
}

void FactColumn::Relayout(Block* b, uint8_t old, int cap) {
  std::unique_ptr<unsigned char[]> mem(new unsigned char[BlockBytes(cap)]);
  const Arrays to = ArraysOf(mem.get(), fields_, cap);
  const Arrays from = ArraysOf(b->mem.get(), old, b->cap);
  const size_t n = static_cast<size_t>(b->n);
  std::memcpy(to.t, from.t, n * sizeof(int64_t));
  if (to.value) {
    if (from.value) {
      std::memcpy(to.value, from.value, n * sizeof(int64_t));
    } else {
      std::memset(to.value, 0, n * sizeof(int64_t));
    }
  }
  const std::pair<uint32_t*, uint32_t*> u32[] = {{to.account, from.account},
                                                 {to.subject, from.subject}};
  for (const auto& [dst, src] : u32) {
    if (dst == nullptr) continue;
    if (src) {
      std::memcpy(dst, src, n * sizeof(uint32_t));
    } else {
      std::memset(dst, 0, n * sizeof(uint32_t));
    }
  }
  // aux: absent, narrow or wide, to narrow or wide (never narrower).
  if (to.aux8) {
    if (from.aux8) {
      std::memcpy(to.aux8, from.aux8, n);
    } else {
      std::memset(to.aux8, 0, n);
    }
  } else if (to.aux) {
    if (from.aux) {
      std::memcpy(to.aux, from.aux, n * sizeof(uint32_t));
    } else {
      for (size_t i = 0; i < n; ++i) to.aux[i] = from.aux8 ? from.aux8[i] : 0;
    }
  }
  slots_ += static_cast<size_t>(cap) - static_cast<size_t>(b->cap);
  b->mem = std::move(mem);
  b->cap = cap;
  View(b, fields_);
}

void FactColumn::MoveTail(Block* src, int from, Block* dst) const {
  const int m = src->n - from;
  const Arrays s = ArraysOf(src->mem.get(), fields_, src->cap);
  const Arrays d = ArraysOf(dst->mem.get(), fields_, dst->cap);
  Shift(d, 0, dst->n, m);
  std::memcpy(d.t, s.t + from, sizeof(int64_t) * static_cast<size_t>(m));
  if (d.value) std::memcpy(d.value, s.value + from, sizeof(int64_t) * static_cast<size_t>(m));
  const std::pair<uint32_t*, uint32_t*> u32[] = {
      {d.account, s.account}, {d.subject, s.subject}, {d.aux, s.aux}};
  for (const auto& [to, fr] : u32) {
    if (to) std::memcpy(to, fr + from, sizeof(uint32_t) * static_cast<size_t>(m));
  }
  if (d.aux8) std::memcpy(d.aux8, s.aux8 + from, static_cast<size_t>(m));
  src->n = from;
  dst->n += m;
}

size_t FactColumn::FirstBlock(int64_t t) const {
  auto it =
      std::lower_bound(blocks_.begin(), blocks_.end(), t,
                       [](const std::unique_ptr<Block>& b, int64_t x) { return b->t[0] < x; });
  return it == blocks_.begin() ? 0 : static_cast<size_t>(it - blocks_.begin()) - 1;
}

void FactColumn::Insert(int64_t t, const Fact& f) {
  if (const uint8_t need = FieldsOf(f); (need & ~fields_) != 0) Widen(need);
  ++size_;
  if (blocks_.empty()) blocks_.push_back(NewBlock(kBlock));
  Block* last = blocks_.back().get();
  // In-order arrival (the common case) appends.
  if (last->n == 0 || t >= last->t[last->n - 1]) {
    if (last->n == last->cap) {
      blocks_.push_back(NewBlock(kBlock));
      last = blocks_.back().get();
    }
    // Through the block's own views: a present field's view is its array
    // (writable memory the block owns), and this runs once per ingested
    // fact, where ArraysOf's walk over the fields cost more than the stores.
    const int i = last->n;
    const_cast<int64_t*>(last->t)[i] = t;
    if (fields_ & kFieldValue) const_cast<int64_t*>(last->value)[i] = f.value;
    if (fields_ & kFieldAccount) const_cast<uint32_t*>(last->account)[i] = f.account;
    if (fields_ & kFieldSubject) const_cast<uint32_t*>(last->subject)[i] = f.subject;
    if (fields_ & kFieldAux) {
      if (fields_ & kFieldAuxWide) {
        const_cast<uint32_t*>(last->aux)[i] = f.aux;
      } else {
        const_cast<uint8_t*>(last->aux8)[i] = static_cast<uint8_t>(f.aux);
      }
    }
    last->n = i + 1;
    return;
  }
  // A late fact goes after every fact at or before its time: the last block
  // starting at or before it, else the first.
  auto it =
      std::upper_bound(blocks_.begin(), blocks_.end(), t,
                       [](int64_t x, const std::unique_ptr<Block>& b) { return x < b->t[0]; });
  size_t b = it == blocks_.begin() ? 0 : static_cast<size_t>(it - blocks_.begin()) - 1;
  Block* blk = blocks_[b].get();
  int pos = static_cast<int>(std::upper_bound(blk->t, blk->t + blk->n, t) - blk->t);
  if (blk->n == blk->cap && pos == blk->n && b + 1 < blocks_.size() &&
      blocks_[b + 1]->n < blocks_[b + 1]->cap) {
    // After every fact of a full block: the front of the next one, which has
    // room (its first fact is later than t, or it would have been chosen).
    ++b;
    blk = blocks_[b].get();
    pos = 0;
  }
  if (blk->n == blk->cap && pos < blk->n) {
    // First the room of the next few blocks: each full block in between
    // passes its last `move` facts on to the next, so the room travels back
    // here (at most kChain block moves, and then that room takes the next
    // late facts here). Where late facts land near the newest (the last
    // block has room), this keeps every block full.
    size_t c = b + 1;
    while (c < blocks_.size() && c <= b + kChain && blocks_[c]->n == blocks_[c]->cap) ++c;
    if (c < blocks_.size() && c <= b + kChain) {
      // The fact stays in this block: only facts after it move, a few at a
      // time, so that the blocks passed through stay full.
      const int move =
          std::min({std::max(1, (blocks_[c]->cap - blocks_[c]->n) / 2), kGrow, blk->n - pos});
      for (size_t j = c; j-- > b;) {
        MoveTail(blocks_[j].get(), blocks_[j]->n - move, blocks_[j + 1].get());
      }
    }
  }
  if (blk->n == blk->cap) {
    // No room within reach: this block grows.
    if (blk->cap + kGrow <= kMaxBlock) {
      // Room for this fact and the next few late ones here.
      Relayout(blk, fields_, blk->cap + kGrow);
    } else {
      // Two blocks of half the facts each, with kGrow room apiece.
      const int keep = blk->n / 2;
      auto half = NewBlock(blk->n - keep + kGrow);
      MoveTail(blk, keep, half.get());
      Relayout(blk, fields_, keep + kGrow);
      Block* second = half.get();
      blocks_.insert(blocks_.begin() + static_cast<std::ptrdiff_t>(b) + 1, std::move(half));
      if (pos > keep) {
        blk = second;
        pos -= keep;
      }
    }
  }
  const Arrays a = ArraysOf(blk->mem.get(), fields_, blk->cap);
  Shift(a, pos, blk->n, 1);
  Put(a, pos, t, f);
  ++blk->n;
}

size_t FactColumn::MemoryBytes() const {
  return blocks_.capacity() * sizeof(void*) + blocks_.size() * sizeof(Block) +
         BlockBytes(1) * slots_;
}

FactStore::FactStore() {
  column(FactKind::kLead).DerivedFromDeals(&deals, false);
  column(FactKind::kStageEntry).DerivedFromDeals(&deals, true);
  column(FactKind::kWon).DerivedFromDeals(&deals, false);
  column(FactKind::kLost).DerivedFromDeals(&deals, false);
}

size_t FactStore::facts() const {
  size_t n = 0;
  for (const FactColumn& c : columns) n += c.size();
  return n;
}

FactStore::Memory FactStore::MemoryUse() const {
  Memory m;
  m.strings = strings.MemoryBytes();
  m.cells = cells->MemoryBytes();
  for (const FactColumn& c : columns) m.facts += c.MemoryBytes();
  for (const AccountData& a : accounts) {
    m.accounts += sizeof(AccountData) + a.attr.MemoryBytes() + a.orders.MemoryBytes() +
                  a.outbound.MemoryBytes() + a.completed.MemoryBytes() + a.feedback.MemoryBytes() +
                  a.status.MemoryBytes();
    m.slack += a.attr.SlackBytes() + a.orders.SlackBytes() + a.outbound.SlackBytes() +
               a.completed.SlackBytes() + a.feedback.SlackBytes() + a.status.SlackBytes();
  }
  for (const DealData& d : deals) {
    m.deals += sizeof(DealData) + d.visits.MemoryBytes();
    m.slack += d.visits.SlackBytes();
  }
  m.orders = orders.size() * sizeof(OrderData);
  m.invoices = invoices.size() * sizeof(InvoiceData);
  for (const auto& p : invoice_payments) m.invoices += sizeof(p) + p.MemoryBytes();
  return m;
}

size_t FactStore::MemoryBytes() const {
  const Memory m = MemoryUse();
  return m.strings + m.cells + m.facts + m.accounts + m.deals + m.orders + m.invoices;
}

void ClientSpans(const AccountData& a, int64_t churn_after, std::vector<ClientSpan>* out) {
  out->clear();
  bool client = false;
  int64_t since = 0, deadline = 0;
  size_t oi = 0, ci = 0;
  while (oi < a.orders.size() || ci < a.status.size()) {
    const bool order =
        ci == a.status.size() || (oi < a.orders.size() && a.orders[oi].at < a.status[ci].at);
    const int64_t t = order ? a.orders[oi].at.t : a.status[ci].at.t;
    if (client && deadline < t) {
      out->push_back({since, deadline});
      client = false;
    }
    if (order) {
      if (!client) since = t;
      client = true;
      deadline = t + churn_after;
      ++oi;
    } else {
      if (client) out->push_back({since, t});
      client = false;
      ++ci;
    }
  }
  if (client) out->push_back({since, deadline});
}

}  // namespace rapport::kpi
