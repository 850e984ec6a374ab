#include "lib/kpi/fact_store.h"
#include "lib/kpi/cells.h"

#include <algorithm>
#include <cstring>

namespace rapport::kpi {

uint32_t StringPool::Intern(absl::string_view s) {
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

size_t FactColumn::FirstBlock(int64_t t) const {
  auto it = std::lower_bound(blocks_.begin(), blocks_.end(), t,
                             [](const std::unique_ptr<Block>& b, int64_t x) { return b->t[0] < x; });
  return it == blocks_.begin() ? 0 : static_cast<size_t>(it - blocks_.begin()) - 1;
}

void FactColumn::Insert(int64_t t, const Fact& f) {
  ++size_;
  if (blocks_.empty()) blocks_.push_back(std::make_unique<Block>());
  Block* last = blocks_.back().get();
  // In-order arrival (the common case) appends.
  if (last->n == 0 || t >= last->t[last->n - 1]) {
    if (last->n == kBlock) {
      blocks_.push_back(std::make_unique<Block>());
      last = blocks_.back().get();
    }
    last->t[last->n] = t;
    last->f[last->n] = f;
    ++last->n;
    return;
  }
  // A late fact goes after every fact at or before its time: the last block
  // starting at or before it, else the first.
  auto it = std::upper_bound(blocks_.begin(), blocks_.end(), t,
                             [](int64_t x, const std::unique_ptr<Block>& b) { return x < b->t[0]; });
  size_t b = it == blocks_.begin() ? 0 : static_cast<size_t>(it - blocks_.begin()) - 1;
  Block* blk = blocks_[b].get();
  int pos = static_cast<int>(std::upper_bound(blk->t, blk->t + blk->n, t) - blk->t);
  if (blk->n == kBlock) {
    auto half = std::make_unique<Block>();
    const int keep = kBlock / 2;
    half->n = kBlock - keep;
    std::memcpy(half->t, blk->t + keep, sizeof(int64_t) * half->n);
    std::memcpy(half->f, blk->f + keep, sizeof(Fact) * half->n);
    blk->n = keep;
    Block* second = half.get();
    blocks_.insert(blocks_.begin() + static_cast<std::ptrdiff_t>(b) + 1, std::move(half));
    if (pos > keep) {
      blk = second;
      pos -= keep;
    }
  }
  std::memmove(blk->t + pos + 1, blk->t + pos, sizeof(int64_t) * (blk->n - pos));
  std::memmove(blk->f + pos + 1, blk->f + pos, sizeof(Fact) * (blk->n - pos));
  blk->t[pos] = t;
  blk->f[pos] = f;
  ++blk->n;
}

size_t FactColumn::MemoryBytes() const {
  return blocks_.capacity() * sizeof(void*) + blocks_.size() * sizeof(Block);
}

size_t FactStore::facts() const {
  size_t n = 0;
  for (const FactColumn& c : columns) n += c.size();
  return n;
}

size_t FactStore::MemoryBytes() const {
  size_t n = strings.MemoryBytes() + cells->MemoryBytes();
  for (const FactColumn& c : columns) n += c.MemoryBytes();
  for (const AccountData& a : accounts) {
    n += sizeof(AccountData) + a.attr.capacity() * sizeof(AttrEntry) +
         a.orders.capacity() * sizeof(OrderRef) + a.outbound.capacity() * sizeof(int64_t) +
         a.completed.capacity() * sizeof(int64_t) +
         a.feedback.capacity() * sizeof(FeedbackRef) + a.status.capacity() * sizeof(StatusEvent);
  }
  for (const DealData& d : deals) n += sizeof(DealData) + d.visits.capacity() * sizeof(Visit);
  n += orders.size() * sizeof(OrderData) + invoices.size() * sizeof(InvoiceData);
  for (const auto& p : invoice_payments) n += sizeof(p) + p.capacity() * sizeof(Payment);
  return n;
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
