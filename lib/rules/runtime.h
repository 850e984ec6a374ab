// The regulations at run time: events wake rules on ingest, timers wait in a
// heap and fire on Advance in time order (each exactly once), and produced
// actions go to the actions table, the outbox, and the caller of the write
// that produced them.
//
// The engine never carries an action out: a MOVE_STAGE action asks the host,
// who reports the move back as a deal-stage-changed event. So every stage
// entry is a real event, and an SLA timer watches exactly one stage entry.
//
// Everything here runs under the state's lock (writers exclusive), called by
// ApplyEvent, AdvanceClock, the Engine and snapshot code.
#ifndef RAPPORT_LIB_RULES_RUNTIME_H_
#define RAPPORT_LIB_RULES_RUNTIME_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "lib/lifecycle/pipelines.h"
#include "lib/rules/rule_set.h"
#include "lib/state/event_refs.h"
#include "rapport/v1/event.pb.h"
#include "rapport/v1/rules.pb.h"
#include "rapport/v1/snapshot.pb.h"

namespace rapport {

struct EngineState;

namespace rules {

// A pending timer: 32 bytes, so that a heap of them (at most twice its size
// while the vector grows) stays within 64 bytes per pending timer.
struct Timer {
  int64_t fire_at_us;
  // The causing event's id, viewed in the engine's event id log (which never
  // moves its ids); nullptr when there is none.
  const char* cause;
  // Creation order; breaks ties at one instant.
  uint32_t seq;
  // By trigger (see rapport.v1.RulesRuntime): account, deal or holiday index.
  uint32_t subject;
  // By trigger: deal index + 1 (0: none), stage visit index, or year.
  uint32_t extra;
  uint16_t rule;
  uint8_t cause_len;
  // The causing complaint's severity, else 0.
  uint8_t aux;
};
static_assert(sizeof(Timer) == 32, "keep pending timers at 32 bytes");

// Orders the heap: the earliest timer (then the first created) on top.
struct TimerAfter {
  bool operator()(const Timer& a, const Timer& b) const {
    return a.fire_at_us != b.fire_at_us ? a.fire_at_us > b.fire_at_us : a.seq > b.seq;
  }
};

// A set of action indexes, as a bitmap: action indexes are dense, so an
// insert on the per-fired-timer path costs a bit instead of a hash probe (and
// an eighth of a byte per action instead of a growing hash table). Offers
// the part of the flat_hash_set interface the runtime uses.
class ActionIndexSet {
 public:
  // False when `i` was in the set already.
  bool insert(uint32_t i) {
    const size_t w = i >> 6;
    if (w >= words_.size()) words_.resize(std::max(w + 1, words_.size() * 2), 0);
    const uint64_t bit = uint64_t{1} << (i & 63);
    if (words_[w] & bit) return false;
    words_[w] |= bit;
    ++size_;
    return true;
  }
  // The number of elements removed (0 or 1).
  size_t erase(uint32_t i) {
    const size_t w = i >> 6;
    const uint64_t bit = uint64_t{1} << (i & 63);
    if (w >= words_.size() || !(words_[w] & bit)) return 0;
    words_[w] &= ~bit;
    --size_;
    return 1;
  }
  bool contains(uint32_t i) const {
    const size_t w = i >> 6;
    return w < words_.size() && ((words_[w] >> (i & 63)) & 1) != 0;
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  std::vector<uint64_t> words_;
  size_t size_ = 0;
};

// Places a vector's first element 32 bytes past a 64-byte boundary. For the
// timer heap (32-byte timers) the two children of node i, 2i+1 and 2i+2, then
// share one cache line, so a sift-down through a heap far larger than the
// caches misses one line per level instead of two.
template <typename T>
struct TimerHeapAllocator {
  static_assert(sizeof(T) == 32, "the offset assumes 32-byte elements");
  using value_type = T;
  TimerHeapAllocator() = default;
  template <typename U>
  TimerHeapAllocator(const TimerHeapAllocator<U>&) {}  // NOLINT: allocator rebind
  T* allocate(size_t n) {
    char* p = static_cast<char*>(::operator new (n * sizeof(T) + 32, std::align_val_t{64}));
    return reinterpret_cast<T*>(p + 32);
  }
  void deallocate(T* p, size_t) {
    ::operator delete (reinterpret_cast<char*>(p) - 32, std::align_val_t{64});
  }
  friend bool operator==(const TimerHeapAllocator&, const TimerHeapAllocator&) { return true; }
  friend bool operator!=(const TimerHeapAllocator&, const TimerHeapAllocator&) { return false; }
};
using TimerHeap = std::vector<Timer, TimerHeapAllocator<Timer>>;

// Removes and returns the top (earliest) timer of a non-empty heap. The
// array it leaves is exactly the one std::pop_heap with TimerAfter followed
// by pop_back leaves (the same moves, so snapshots do not change), but each
// level prefetches the line of the level after next.
Timer PopTimer(TimerHeap* heap);

struct Runtime {
  // The rule set in effect; set by Install, never null afterwards.
  std::unique_ptr<const CompiledRules> rules;

  // Pending timers: a binary min-heap (std::push_heap with TimerAfter).
  TimerHeap timers;
  uint32_t next_timer_seq = 0;
  // Per rule: accounts that had their first event matching the rule's
  // first-for-account filter.
  std::vector<absl::flat_hash_set<uint32_t>> first_seen;
  // Per watch, by account index: ascending times (empty: none). Dense, not
  // a hash map: a watch records on most events of its type, and the map's
  // probe was a cache miss on nearly every one.
  std::vector<std::vector<std::vector<int64_t>>> watch_logs;

  // Derived from the tables (rebuilt on restore).
  // Stage visits already seen per deal index, to spot new stage entries.
  std::vector<uint32_t> deal_visits;
  // Accounts already seen (anniversary timers start on creation).
  uint32_t accounts_seen = 0;
  // Indexes of CREATE_TASK actions not yet done, with an assignee.
  ActionIndexSet open_tasks;
  // Per rule (open-tasks triggers only): manager id -> open tasks counted.
  std::vector<absl::flat_hash_map<std::string, int32_t>> open_task_counts;
  // Action indexes in creation order that were pending when produced; the
  // ones no longer pending are skipped and compacted away.
  std::vector<uint32_t> outbox;
  // Actions produced since the last TakeProduced.
  std::vector<uint32_t> produced;
  // Per rule: its id and the rule set's id interned in the action store's
  // pool, then one template per action spec; empty until the rule first
  // produces (interning per action would cost a hash lookup each).
  std::vector<std::vector<uint32_t>> interned;
  // The pool index of the last assignee produced (a cache: compared by
  // content before use, so any valid index is correct).
  uint32_t last_assignee = 0;
};

// Validates `set` against `pipelines` and makes it the runtime's rule set.
// Errors: see CompiledRules::Compile.
absl::Status Install(const v1::RuleSet& set, const Pipelines& pipelines, Runtime* runtime);

// A new engine: schedules the clock-driven timers (holidays, the rule set's
// age). Restore loads them from the snapshot instead.
void ScheduleClockTimers(EngineState* state);

// Runs the rules an applied event wakes (ApplyEvent calls it last), with the
// rows validation resolved for it: the account and deal it concerns, and its
// id's hash in the event id log.
void OnEvent(const v1::Event& event, const EventRefs& refs, EngineState* state);

// The earliest pending timer's fire time, or INT64_MAX when none.
int64_t NextTimerAt(const EngineState& state);
// Fires the earliest pending timer (there must be one).
void FireNextTimer(EngineState* state);

// Moves the actions produced since the last call into `out`, in order.
void TakeProduced(EngineState* state, google::protobuf::RepeatedPtrField<v1::Action>* out);

// Builds the message for stored action `i` (state.actions.at(i)).
void ActionToProto(const EngineState& state, uint32_t i, v1::Action* out);

// Loads a snapshot's actions into the empty action store of a state whose
// tables and event ids are loaded. Errors: INVALID_ARGUMENT naming the action
// and what is wrong (an id that is not "<rule id>-<32 hex digits>" of its
// rule, a repeated id, an unknown account, deal or causing event).
absl::Status LoadActions(const google::protobuf::RepeatedPtrField<v1::Action>& rows,
                         EngineState* state);

// Pending actions (produced, not yet acknowledged), in creation order.
v1::ActionList Outbox(const EngineState& state);

// Marks actions acknowledged. Errors: NOT_FOUND naming the first unknown id,
// INVALID_ARGUMENT for a repeated one; then nothing changes.
absl::Status Acknowledge(absl::Span<const std::string> ids, EngineState* state);
// The two halves of Acknowledge, for a persistent engine that journals
// between them: the actions `ids` name that are still pending (the checks
// and errors of Acknowledge; nothing changes), then marking them.
absl::StatusOr<std::vector<uint32_t>> PendingToAcknowledge(absl::Span<const std::string> ids,
                                                           const EngineState& state);
void MarkAcknowledged(absl::Span<const uint32_t> actions, EngineState* state);

// The runtime's part of a snapshot, deterministically (sorted where the
// in-memory order is a hash map's).
void WriteRuntime(const EngineState& state, v1::RulesRuntime* out);
// WriteRuntime's fields after the timer columns (next_timer_seq, first_seen,
// watch_logs) only: the fast snapshot writer writes the timers itself.
void WriteRuntimeAfterTimers(const EngineState& state, v1::RulesRuntime* out);
// The timers' causes as RulesRuntime.timer_cause_index holds them (the causing
// event's index in the event-id log plus one; 0 for none), in heap order, for
// the fast snapshot writer; WriteRuntime computes the same one by one.
std::vector<uint32_t> TimerCauseIndexes(const EngineState& state);
// Loads it into a state whose tables, config and event ids are loaded, and
// rebuilds the derived parts. Errors: INVALID_ARGUMENT naming what is
// inconsistent (an index out of range, an unknown cause, a broken heap).
absl::Status ReadRuntime(const v1::RulesRuntime& in, EngineState* state);

// Bytes the pending timers take (the heap's capacity), for measurements.
size_t TimerBytes(const Runtime& runtime);

}  // namespace rules
}  // namespace rapport

#endif  // RAPPORT_LIB_RULES_RUNTIME_H_
