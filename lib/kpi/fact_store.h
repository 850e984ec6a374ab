// The KPIs' fact store: every fact a KPI of SPEC §5 reads, kept on ingest.
//
// Facts live in one time-ordered column set per kind (leads, stage entries,
// orders, payments, activities, ...), so a query reads only the kinds it needs
// and, within a kind, only its time range. Each column set is a list of
// blocks sorted by (occurred_at, arrival): the time column on its own (for the
// range search) beside a small payload. A late event is inserted into its
// block (a move of at most one block); a full block splits. Ids are dense
// indexes into the engine's tables or into the store's string pool.
//
// Beside the facts, per-entity timelines (an account's orders, outbound
// contacts, feedback, status events and attribution; a deal's stage visits and
// first win and loss) answer the cross-event questions of the KPIs ("was this
// the account's first order", "did a contact follow within 7 days") without a
// scan. They are derived from the facts and the engine's tables, so a snapshot
// stores the facts only and rebuilds the rest.
//
// Thread-safety: none of its own; the engine's mutex guards it like the rest
// of EngineState.
#ifndef RAPPORT_LIB_KPI_FACT_STORE_H_
#define RAPPORT_LIB_KPI_FACT_STORE_H_

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace rapport::kpi {

inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// Interned strings (manager, team, partner ids, segments, currencies); id 0
// is the empty string.
class StringPool {
 public:
  StringPool() {
    strings_.emplace_back();
    ids_.emplace(strings_.back(), 0);
  }
  uint32_t Intern(absl::string_view s);
  // Intern for a call site that mostly sees the string it saw last (an
  // order's currency): `*last` is the id it returned last time, and a compare
  // with that string replaces the hash when it is the same again.
  uint32_t Intern(absl::string_view s, uint32_t* last) {
    if (*last < strings_.size() && strings_[*last] == s) return *last;
    return *last = Intern(s);
  }
  // kMissing when absent.
  uint32_t Find(absl::string_view s) const;
  const std::string& at(uint32_t id) const { return strings_[id]; }
  size_t size() const { return strings_.size(); }
  size_t MemoryBytes() const;
  static constexpr uint32_t kMissing = UINT32_MAX;

 private:
  std::deque<std::string> strings_;
  absl::flat_hash_map<std::string, uint32_t> ids_;
};

enum class FactKind : uint8_t {
  kLead = 0,            // subject: deal
  kStageEntry = 1,      // subject: deal; aux: stage index; value: seq
  kWon = 2,             // subject: deal; value: seq
  kLost = 3,            // subject: deal; value: seq
  kPartnerAgreed = 4,   // value: seq
  kPartnerChurned = 5,  // value: seq
  kAccountChurned = 6,  // value: seq
  kOrderPlaced = 7,     // subject: order; aux: currency; value: amount
  kOrderCompleted = 8,  // subject: order
  kPayment = 9,         // subject: invoice + 1 (0: none); aux: currency; value: amount
  kActivity = 10,       // subject: manager (string id); aux: ActivityCode
  kFeedback = 11,       // value: score 0..10
};
inline constexpr int kFactKinds = 12;

// An activity's kind and direction in one number: (kind - 1) * 2 + inbound,
// 0..7, the order of rapport.v1.ActivityCounts.
inline uint32_t ActivityCode(int kind, bool inbound) {
  return static_cast<uint32_t>((kind - 1) * 2 + (inbound ? 1 : 0));
}
inline bool ActivityInbound(uint32_t code) { return (code & 1) != 0; }

// A fact's payload; its time is in the block's own column.
struct Fact {
  int64_t value;
  uint32_t account;
  uint32_t subject;
  uint32_t aux;
};

// The payload fields a column stores (FactColumn::fields()).
enum FactField : uint8_t {
  kFieldValue = 1,
  kFieldAccount = 2,
  kFieldSubject = 4,
  kFieldAux = 8,
  // With kFieldAux: the aux array holds 32 bits, not 8 (see FactColumn).
  kFieldAuxWide = 16,
};

struct DealData;

// Facts of one kind ordered by (time, arrival), as structs of arrays in
// blocks: one array per field, so a scan reads only the fields it needs.
//
// A field is stored only once a fact of the column has a non-zero value in it
// (a lead's value and aux, an activity's value are always 0): the column
// widens, once per field, when the first such fact arrives, so nothing is
// ever lost whatever the facts hold. An absent field reads as zeros (its
// pointer is a shared block of zeros).
//
// The aux field is stored in 8 bits until a fact's aux passes 255 (the column
// then widens it to 32): most columns' aux is small (an activity code 0..7, a
// stage entry's visit index, a currency id), and 3 bytes of each of those
// facts were ~2 bytes per stored event. Read it through Block::Aux.
//
// A block's arrays hold `cap` facts (kBlock when appended in order). A late
// fact in a full block takes room from the next few blocks (shifting facts
// on), or else grows the block by kGrow (a copy of its arrays) up to
// kMaxBlock, where it splits into two of kBlock facts and kGrow room: no
// block but the last has more than kGrow slots of room. (Splitting when the
// next blocks had none left 20 % of the activity column's slots empty at 10 M
// events: late activities land up to 10 days back, beyond a shift's reach,
// and each split left 512 slots that the few later late facts there never
// filled; 1.2 B per stored event.)
// Every block but the last is at least half of kBlock full.
//
// The deal kinds' columns (lead, stage entry, won, lost) do not store what
// the deal holds (DerivedFromDeals): their account is the deal's, and a
// stage entry's arrival seq and stage are its visit's, which the column
// points at by the visit's index in the deal's visits (in its aux array).
// So a deal's stage history is stored once, in its visits; the column keeps
// the time order (and the deal) for the range searches. Read such a column
// through Block::at (ForRange, ForAll), never its account, value or aux
// arrays.
class FactColumn {
 public:
  static constexpr int kBlock = 1024;
  // How far a full block grows for a late fact, and how far at most.
  static constexpr int kGrow = kBlock / 32;
  static constexpr int kMaxBlock = 2 * kBlock;
  struct Block {
    int n = 0;
    // The facts the arrays have room for.
    int cap = 0;
    const int64_t* t = nullptr;
    const int64_t* value = nullptr;
    const uint32_t* account = nullptr;
    const uint32_t* subject = nullptr;
    // The aux array: aux8 while the column's aux is narrow (shared zeros
    // when absent), aux once it is wide; the other is null.
    const uint8_t* aux8 = nullptr;
    const uint32_t* aux = nullptr;
    uint32_t Aux(int i) const { return aux8 != nullptr ? aux8[i] : aux[i]; }
    std::unique_ptr<unsigned char[]> mem;
    // The column's DerivedFromDeals (null: every field is stored).
    const std::deque<DealData>* deals = nullptr;
    bool visit_index = false;
    // The fact at i, whether stored or derived (defined below DealData).
    inline Fact at(int i) const;
  };

  FactColumn() = default;
  FactColumn(FactColumn&&) = default;
  FactColumn& operator=(FactColumn&&) = default;

  void Insert(int64_t t, const Fact& f);
  // Makes the column a deal kind's (see the class comment): at() takes the
  // account from `deals` (which must outlive the column), and, with
  // `visit_index`, the value (seq) and aux (stage) from the visit aux[i]
  // indexes. Insert must then be given the fact as stored: account 0, and
  // for stage entries value 0 and aux the visit's index. Call before any
  // Insert.
  void DerivedFromDeals(const std::deque<DealData>* deals, bool visit_index);
  // The stored aux of the fact at time `t` of deal `subject` whose aux is
  // `from` becomes `to` (a stage entry whose visit moved on by a late
  // visit's insertion before it). Finds it by the time search; nothing if
  // there is no such fact.
  void SetAux(int64_t t, uint32_t subject, uint32_t from, uint32_t to);
  size_t size() const { return size_; }
  // Which FactFields are stored.
  uint8_t fields() const { return fields_; }
  const std::vector<std::unique_ptr<Block>>& blocks() const { return blocks_; }
  size_t MemoryBytes() const;
  // Bytes the arrays of a block of kBlock facts of this column hold.
  size_t BlockBytes() const { return BlockBytes(kBlock); }

  // Calls fn(block, i0, i1) for the index ranges [i0, i1) of the blocks that
  // hold the facts with t in [from, to), in order.
  template <typename Fn>
  void ForSpans(int64_t from, int64_t to, Fn&& fn) const {
    if (from >= to) return;
    for (size_t b = FirstBlock(from); b < blocks_.size(); ++b) {
      const Block& blk = *blocks_[b];
      if (blk.n == 0 || blk.t[0] >= to) break;
      int i = 0;
      if (blk.t[0] < from)
        i = static_cast<int>(std::lower_bound(blk.t, blk.t + blk.n, from) - blk.t);
      int e = blk.n;
      const bool last = blk.t[blk.n - 1] >= to;
      if (last) e = static_cast<int>(std::lower_bound(blk.t + i, blk.t + blk.n, to) - blk.t);
      if (i < e) fn(blk, i, e);
      if (last) return;
    }
  }

  // Calls fn(t, fact) for every fact with t in [from, to), in order.
  template <typename Fn>
  void ForRange(int64_t from, int64_t to, Fn&& fn) const {
    ForSpans(from, to, [&](const Block& blk, int i0, int i1) {
      for (int i = i0; i < i1; ++i) fn(blk.t[i], blk.at(i));
    });
  }
  template <typename Fn>
  void ForAll(Fn&& fn) const {
    for (const auto& b : blocks_) {
      for (int i = 0; i < b->n; ++i) fn(b->t[i], b->at(i));
    }
  }

 private:
  // The first block that may hold a fact at or after `t`.
  size_t FirstBlock(int64_t t) const;
  // Bytes of a block's arrays with room for `cap` facts.
  size_t BlockBytes(int cap) const;
  std::unique_ptr<Block> NewBlock(int cap);
  // Stores the fields of `add` too, in every block.
  void Widen(uint8_t add);
  // Gives `b` new arrays with room for `cap` facts (at least b->n) of
  // `fields_`, its facts copied from its arrays of fields `old`.
  void Relayout(Block* b, uint8_t old, int cap);
  // Moves the facts [from, n) of `src` to the front of `dst`.
  void MoveTail(Block* src, int from, Block* dst) const;
  std::vector<std::unique_ptr<Block>> blocks_;
  size_t size_ = 0;
  // The blocks' cap, summed.
  size_t slots_ = 0;
  uint8_t fields_ = 0;
  const std::deque<DealData>* deals_ = nullptr;
  bool visit_index_ = false;
};

// (time, arrival seq): the order of "before" and of ties (later arrival wins).
struct Stamp {
  int64_t t;
  int64_t seq;
  friend bool operator<(const Stamp& a, const Stamp& b) {
    return a.t != b.t ? a.t < b.t : a.seq < b.seq;
  }
  friend bool operator==(const Stamp& a, const Stamp& b) { return a.t == b.t && a.seq == b.seq; }
};

// A sorted timeline of an entity: a vector of trivially copyable items in
// one pointer. std::vector takes 24 bytes even when empty, and an account has
// six timelines, mostly empty or of one item: at one account per ten events
// the empty vectors alone were ~10 bytes per stored event. Here the size and
// capacity sit in front of the items, in the same allocation, and the
// capacity grows by one item up to 4 and by half (not double) past that:
// most timelines end small, and the room 1, 2, 4 left unfilled was 0.3 B
// per stored event for 0.13 % more ingest instructions in BM_IngestProtobuf.
template <typename T>
class Timeline {
  static_assert(std::is_trivially_copyable_v<T> && alignof(T) <= 8);

 public:
  using value_type = T;
  using iterator = T*;
  using const_iterator = const T*;

  Timeline() = default;
  Timeline(const Timeline& o) { *this = o; }
  Timeline(Timeline&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Timeline& operator=(const Timeline& o) {
    if (this == &o) return *this;
    clear();
    if (!o.empty()) {
      Reserve(o.size());
      std::memcpy(data(), o.data(), o.size() * sizeof(T));
      h_->size = o.h_->size;
    }
    return *this;
  }
  Timeline& operator=(Timeline&& o) noexcept {
    std::swap(h_, o.h_);
    return *this;
  }
  ~Timeline() { std::free(h_); }

  size_t size() const { return h_ == nullptr ? 0 : h_->size; }
  size_t capacity() const { return h_ == nullptr ? 0 : h_->cap; }
  bool empty() const { return size() == 0; }
  T* data() { return h_ == nullptr ? nullptr : Items(h_); }
  const T* data() const { return h_ == nullptr ? nullptr : Items(h_); }
  T* begin() { return data(); }
  T* end() { return data() + size(); }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size(); }
  T& operator[](size_t i) { return data()[i]; }
  const T& operator[](size_t i) const { return data()[i]; }
  const T& front() const { return data()[0]; }
  const T& back() const { return data()[size() - 1]; }
  // The size of the timeline whose data() is `items` (not null), read in
  // front of the items: a pass that kept only data() pointers (the KPI
  // scan's deal pass) reads it from the items' cache line, not the owner's.
  static size_t SizeOf(const T* items) { return reinterpret_cast<const Header*>(items)[-1].size; }
  // Bytes held (the header and the items' room).
  size_t MemoryBytes() const { return h_ == nullptr ? 0 : sizeof(Header) + h_->cap * sizeof(T); }
  // Bytes of room not filled.
  size_t SlackBytes() const { return (capacity() - size()) * sizeof(T); }

  void clear() {
    if (h_ != nullptr) h_->size = 0;
  }
  // Room for `n` items in all (never shrinks; nothing for 0).
  void reserve(size_t n) { Reserve(n); }
  // Gives back the room not filled (nothing when full; frees when empty).
  void shrink_to_fit() {
    if (h_ == nullptr || h_->size == h_->cap) return;
    if (h_->size == 0) {
      std::free(std::exchange(h_, nullptr));
      return;
    }
    // A failed shrink keeps the larger block, which is still valid.
    void* p = std::realloc(h_, sizeof(Header) + h_->size * sizeof(T));
    if (p == nullptr) return;
    h_ = static_cast<Header*>(p);
    h_->cap = h_->size;
  }
  void push_back(const T& x) { insert(end(), x); }
  T* insert(const T* pos, const T& x) {
    const size_t i = static_cast<size_t>(pos - begin()), n = size();
    if (n == capacity()) Reserve(n < 4 ? n + 1 : n + n / 2);
    T* d = data();
    // Mostly an append (restore's always): no call to move nothing.
    if (i < n) std::memmove(d + i + 1, d + i, (n - i) * sizeof(T));
    d[i] = x;
    ++h_->size;
    return d + i;
  }

 private:
  struct Header {
    uint32_t size;
    uint32_t cap;
  };
  static T* Items(Header* h) { return reinterpret_cast<T*>(h + 1); }
  static const T* Items(const Header* h) { return reinterpret_cast<const T*>(h + 1); }
  void Reserve(size_t cap) {
    if (cap <= capacity()) return;
    if (cap > UINT32_MAX) std::abort();  // 4 G items of one entity
    const uint32_t size = static_cast<uint32_t>(this->size());
    void* p = std::realloc(h_, sizeof(Header) + cap * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    h_ = static_cast<Header*>(p);
    h_->size = size;
    h_->cap = static_cast<uint32_t>(cap);
  }
  Header* h_ = nullptr;
};

// An attribution entry in 28 bytes, not 32: its stamp is kept as 32-bit
// halves (4-byte aligned), so the ids need no padding after it; nearly every
// account has one entry, and the 4 bytes were ~0.4 B per stored event. Not a
// packed struct: a packed Stamp member is misaligned in every other item, and
// clang binds const references (Stamp's operators, std::max, comparators) to
// it in place, which is undefined behaviour (the fuzz job's UBSan found it).
// Here the stamp is only ever read by value, through memcpy.
struct AttrEntry {
  AttrEntry() = default;
  AttrEntry(Stamp since, uint32_t owner_id, uint32_t team_id, uint32_t segment_id)
      : owner(owner_id), team(team_id), segment(segment_id) {
    std::memcpy(since_, &since, sizeof(since_));
  }
  Stamp since() const {
    Stamp s;
    std::memcpy(&s, since_, sizeof(s));
    return s;
  }
  // since().t, without reading the seq.
  int64_t t() const {
    int64_t t;
    std::memcpy(&t, since_, sizeof(t));
    return t;
  }
  uint32_t owner = 0;
  uint32_t team = 0;
  uint32_t segment = 0;

 private:
  // Stamp's bytes: t, then seq.
  uint32_t since_[4] = {};
};
static_assert(sizeof(AttrEntry) == 28 && alignof(AttrEntry) == 4 &&
              std::is_trivially_copyable_v<AttrEntry>);

struct OrderRef {
  Stamp at;
  uint32_t order;
};

struct StatusEvent {
  Stamp at;
  // Partners: true for agreed, false for churned. Clients: false (churned).
  bool agreed;
};

struct FeedbackRef {
  int64_t t;
  int32_t score;
};

struct AccountData {
  // Copy of EngineState.attributions with interned ids.
  Timeline<AttrEntry> attr;
  // Sorted by stamp.
  Timeline<OrderRef> orders;
  Timeline<int64_t> outbound;
  // Times of the account's order completions, sorted.
  Timeline<int64_t> completed;
  Timeline<FeedbackRef> feedback;
  Timeline<StatusEvent> status;
  uint32_t source_partner = 0;
  uint8_t kind = 0;
  bool referred = false;
};

// client_churn_rate's client periods (SPEC §5): a client account is a
// client from its first order (after a churn: its next order) until it
// churns, by an account-churned event or when `churn_after` passes with no
// order (an order exactly at the deadline keeps it). Replaces *out with the
// periods [from, to] in time order. The scan and the cells both draw them
// here, so they cannot disagree.
struct ClientSpan {
  int64_t from, to;
};
void ClientSpans(const AccountData& a, int64_t churn_after, std::vector<ClientSpan>* out);

// A deal's entry into a stage: its time, and its arrival seq and stage in one
// word (seq << 8 | stage), 16 bytes instead of 24 for a Stamp and an int32.
// A pipeline has at most 64 stages (lib/lifecycle/pipelines.cc); an arrival
// seq is below 2^56 (restore refuses more; ingest would need 2^56 events).
// Plain fields read by value: no reference to a packed member (UBSan).
class Visit {
 public:
  static constexpr int kStageBits = 8;
  static constexpr int64_t kSeqLimit = int64_t{1} << (64 - kStageBits);
  Visit() = default;
  Visit(Stamp at, int32_t stage)
      : t_(at.t),
        seq_stage_(static_cast<uint64_t>(at.seq) << kStageBits | static_cast<uint64_t>(stage)) {}
  Stamp at() const { return Stamp{t_, static_cast<int64_t>(seq_stage_ >> kStageBits)}; }
  int64_t t() const { return t_; }
  int32_t stage() const {
    return static_cast<int32_t>(seq_stage_ & ((uint64_t{1} << kStageBits) - 1));
  }

 private:
  int64_t t_ = 0;
  uint64_t seq_stage_ = 0;
};
static_assert(sizeof(Visit) == 16 && std::is_trivially_copyable_v<Visit>);

struct DealData {
  uint32_t account = 0;
  uint32_t source_partner = 0;
  int32_t pipeline = 0;
  // The next deal of the same account in the cells' list of an account's
  // deals (CellIndex; UINT32_MAX: the end), kept in what was padding here
  // rather than in a vector of the cells' own (4 B a deal). The cells link it
  // through the const store they are given, hence mutable; only ingest and
  // restore (under the engine's writer lock) write it.
  mutable uint32_t next_of_account = UINT32_MAX;
  int64_t created_at = 0;
  // The first win / loss by (time, arrival); kNever if none.
  Stamp won{kNever, kNever};
  Stamp lost{kNever, kNever};
  // Sorted by stamp. The deal's stage history: the stage-entry column
  // points into it (FactColumn::DerivedFromDeals).
  Timeline<Visit> visits;
};
static_assert(sizeof(DealData) == 64);

inline Fact FactColumn::Block::at(int i) const {
  if (deals == nullptr) return Fact{value[i], account[i], subject[i], Aux(i)};
  const DealData& d = (*deals)[subject[i]];
  if (!visit_index) return Fact{value[i], d.account, subject[i], Aux(i)};
  const Visit v = d.visits[Aux(i)];
  return Fact{v.at().seq, d.account, subject[i], static_cast<uint32_t>(v.stage())};
}

struct OrderData {
  Stamp placed{0, 0};
  uint32_t account = 0;
  // A completion took effect (the first to arrive counts).
  bool completed = false;
};
static_assert(sizeof(OrderData) == 24, "the account beside the stamp, not before it");

struct Payment {
  int64_t t;
  int64_t amount;
};

// An invoice's terms, for receivables_overdue.
struct InvoiceData {
  int64_t issued = 0;
  int64_t due = 0;
  int64_t amount = 0;
  uint32_t account = 0;
  uint32_t currency = 0;
};

// The incremental index (lib/kpi/cells.h); owned by the store, built lazily.
class CellIndex;
struct CellIndexDeleter {
  void operator()(CellIndex* p) const;
};
CellIndex* NewCellIndex();

struct FactStore {
  // The deal kinds' columns read the deals (FactColumn::DerivedFromDeals),
  // so the store stays where it is made.
  FactStore();
  FactStore(const FactStore&) = delete;
  FactStore& operator=(const FactStore&) = delete;

  StringPool strings;
  FactColumn columns[kFactKinds];
  std::deque<AccountData> accounts;
  std::deque<DealData> deals;
  std::deque<OrderData> orders;
  // Payments naming each invoice, by invoice index (empty for most: a
  // Timeline is one pointer where a std::vector was three).
  std::deque<Timeline<Payment>> invoice_payments;
  std::deque<InvoiceData> invoices;
  // Stage counts of every pipeline, and the offset of each pipeline's first
  // stage in a flat stage numbering.
  std::vector<int32_t> stage_offset;
  // By flat stage: the SLA after which a deal in it is stuck; 0 for none (no
  // SLA, or the pipeline's last stage).
  std::vector<int64_t> stage_sla;
  // Per-day partial aggregates for the incremental path. A pointer so that a
  // const store (a query under the reader lock) can still build it lazily.
  std::unique_ptr<CellIndex, CellIndexDeleter> cells{NewCellIndex()};
  // The currency ingest interned last (StringPool::Intern's hint).
  uint32_t last_currency = 0;
  // By the engine's manager row index: the manager id's interned id, 0 until
  // an activity of the manager interned it (ingest, EventRefs::manager).
  // Derived; a restored store starts empty and fills as activities come.
  std::vector<uint32_t> manager_strings;
  // The engine's accounts + deals + invoices when ingest last caught the
  // tables above up with them (lib/kpi/ingest.cc Sync): an equal sum means
  // nothing to catch up, known without reading the deques' sizes.
  size_t synced_rows = 0;

  const FactColumn& column(FactKind k) const { return columns[static_cast<int>(k)]; }
  FactColumn& column(FactKind k) { return columns[static_cast<int>(k)]; }
  size_t facts() const;
  // Bytes of memory held (facts, timelines, strings), approximately.
  size_t MemoryBytes() const;
  // The same by part: the fact columns, the timelines of accounts, deals,
  // orders and invoices, the string pool and the cells.
  struct Memory {
    size_t facts = 0, accounts = 0, deals = 0, orders = 0, invoices = 0, strings = 0, cells = 0;
    // Of accounts and deals: the timelines' room not filled (capacity -
    // size), to see what the growth policy costs.
    size_t slack = 0;
  };
  Memory MemoryUse() const;
};

// Inserts `x` into the sorted vector or timeline `v` after every element
// not greater.
template <typename V, typename T, typename Less>
void InsertSorted(V& v, T x, Less less) {
  auto pos = v.end();
  while (pos != v.begin() && less(x, *(pos - 1))) --pos;
  v.insert(pos, std::move(x));
}

}  // namespace rapport::kpi

#endif  // RAPPORT_LIB_KPI_FACT_STORE_H_
