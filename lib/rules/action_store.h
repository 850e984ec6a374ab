// The actions the regulations produced, stored compactly.
//
// An Advance can fire a hundred thousand timers that each create a task, so
// storing an action must cost little: a v1::Action message with its dozen
// strings and a string-keyed index took about 500 bytes of fresh memory per
// action, and page faults dominated. Here an action is one fixed-size struct:
// repeated strings (rule ids, templates, managers, stages, occasions) are
// interned once in a pool, the account and deal are table indexes, the
// causing event's id is a view into the engine's event id log, and the action
// id is kept as the two fingerprints it is printed from. v1::Action messages
// are built only when an action leaves the engine (the returned list, the
// outbox, a snapshot): lib/rules/runtime.h, ActionToProto.
//
// Not thread-safe on its own: it lives in EngineState under the state's lock.
#ifndef RAPPORT_LIB_RULES_ACTION_STORE_H_
#define RAPPORT_LIB_RULES_ACTION_STORE_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace rapport::rules {

// Strings kept once each, named by a dense index; index 0 is "". Views stay
// valid as long as the pool (a deque never moves its elements).
class StringPool {
 public:
  StringPool() { Intern(""); }
  StringPool(const StringPool&) = delete;
  StringPool& operator=(const StringPool&) = delete;

  uint32_t Intern(absl::string_view s) {
    auto it = index_.find(s);
    if (it != index_.end()) return it->second;
    const auto i = static_cast<uint32_t>(strings_.size());
    strings_.emplace_back(s);
    index_.emplace(absl::string_view(strings_.back()), i);
    return i;
  }
  // The index of `s`, or UINT32_MAX when it was never interned.
  uint32_t Find(absl::string_view s) const {
    auto it = index_.find(s);
    return it == index_.end() ? UINT32_MAX : it->second;
  }
  absl::string_view at(uint32_t i) const { return strings_[i]; }

 private:
  std::deque<std::string> strings_;
  absl::flat_hash_map<absl::string_view, uint32_t> index_;
};

// One produced action. Field meanings follow rapport.v1.Action.
struct StoredAction {
  static constexpr uint32_t kNone = UINT32_MAX;
  // `assignee` when the assignee is the action's account (messages, surveys).
  static constexpr uint32_t kAssigneeIsAccount = UINT32_MAX;

  // The action id is "<rule id>-<h1 as 16 hex digits><h2 as 16 hex digits>".
  uint64_t h1 = 0;
  uint64_t h2 = 0;
  int64_t fired_at_us = 0;
  int64_t due_at_us = 0;
  int64_t rule_set_version = 0;
  // The causing event's id (in the event id log, which never moves its ids);
  // nullptr when there is none.
  const char* cause = nullptr;
  // Account and deal table indexes, kNone when the action has none.
  uint32_t account = kNone;
  uint32_t deal = kNone;
  // StringPool indexes.
  uint32_t rule_id = 0;
  uint32_t rule_set_id = 0;
  uint32_t assignee = 0;  // or kAssigneeIsAccount
  uint32_t template_ = 0;
  uint32_t to_stage = 0;
  uint32_t occasion = 0;
  uint8_t cause_len = 0;
  // v1::ActionKind, v1::Assignee, v1::Channel, v1::ActionState.
  uint8_t kind = 0;
  uint8_t assignee_role = 0;
  uint8_t channel = 0;
  uint8_t state = 0;
};

class ActionStore {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  ActionStore() = default;
  ActionStore(const ActionStore&) = delete;
  ActionStore& operator=(const ActionStore&) = delete;

  size_t size() const { return size_; }
  const StoredAction& at(uint32_t i) const {
    return blocks_[i >> kBlockBits][i & (kBlockSize - 1)];
  }
  StoredAction& at(uint32_t i) { return blocks_[i >> kBlockBits][i & (kBlockSize - 1)]; }
  StringPool& pool() { return pool_; }
  const StringPool& pool() const { return pool_; }

  // The index of the action with fingerprints (h1, h2) of the rule whose id
  // is interned as `rule_id`, or kNone.
  uint32_t IndexOf(uint64_t h1, uint64_t h2, uint32_t rule_id) const {
    auto it = index_.find(Key{h1, h2, rule_id});
    return it == index_.end() ? kNone : it->second;
  }
  // Starts loading the index memory an Add of (h1, h2, rule_id) will probe:
  // the index is far larger than the caches, and the probe's miss is the
  // largest part of an Add.
  void Prefetch(uint64_t h1, uint64_t h2, uint32_t rule_id) const {
    index_.prefetch(Key{h1, h2, rule_id});
  }
  // The index of the action with this printed id, or kNone.
  uint32_t IndexOf(absl::string_view id) const {
    uint64_t h1 = 0, h2 = 0;
    absl::string_view rule;
    if (!ParseId(id, &rule, &h1, &h2)) return kNone;
    const uint32_t r = pool_.Find(rule);
    return r == UINT32_MAX ? kNone : IndexOf(h1, h2, r);
  }
  const StoredAction* Find(absl::string_view id) const {
    const uint32_t i = IndexOf(id);
    return i == kNone ? nullptr : &at(i);
  }
  StoredAction* Find(absl::string_view id) {
    const uint32_t i = IndexOf(id);
    return i == kNone ? nullptr : &at(i);
  }
  // Appends `a` and returns its index; kNone (and nothing changes) when an
  // action with its (h1, h2, rule_id) exists. One hash probe either way.
  uint32_t Add(const StoredAction& a) {
    const uint32_t i = size_;
    if (!index_.try_emplace(Key{a.h1, a.h2, a.rule_id}, i).second) return kNone;
    if ((i >> kBlockBits) == blocks_.size()) {
      blocks_.emplace_back(
          static_cast<StoredAction*>(::operator new(sizeof(StoredAction) * kBlockSize)));
    }
    ::new (&blocks_[i >> kBlockBits][i & (kBlockSize - 1)]) StoredAction(a);
    ++size_;
    return i;
  }
  void Reserve(size_t n) {
    blocks_.reserve((n + kBlockSize - 1) >> kBlockBits);
    index_.reserve(n);
  }

  // The printed id of action `i`.
  std::string Id(uint32_t i) const {
    std::string out;
    AppendId(pool_.at(at(i).rule_id), at(i).h1, at(i).h2, &out);
    return out;
  }
  static void AppendId(absl::string_view rule, uint64_t h1, uint64_t h2, std::string* out) {
    const size_t n = out->size();
    out->resize(n + rule.size() + 33);
    WriteId(rule, h1, h2, &(*out)[n]);
  }
  // Writes the printed id (rule.size() + 33 chars) at `p`; returns its size.
  static size_t WriteId(absl::string_view rule, uint64_t h1, uint64_t h2, char* p) {
    static constexpr char kHex[] = "0123456789abcdef";
    const size_t n = rule.size();
    std::copy(rule.begin(), rule.end(), p);
    p[n] = '-';
    for (int i = 0; i < 16; ++i) {
      p[n + 1 + i] = kHex[(h1 >> (60 - 4 * i)) & 0xf];
      p[n + 17 + i] = kHex[(h2 >> (60 - 4 * i)) & 0xf];
    }
    return n + 33;
  }
  // Splits "<rule>-<32 lowercase hex digits>"; false when `id` is not one.
  static bool ParseId(absl::string_view id, absl::string_view* rule, uint64_t* h1, uint64_t* h2) {
    if (id.size() < 34 || id[id.size() - 33] != '-') return false;
    const char* hex = id.data() + id.size() - 32;
    uint64_t v[2] = {0, 0};
    for (int i = 0; i < 32; ++i) {
      const char c = hex[i];
      uint64_t d;
      if (c >= '0' && c <= '9') {
        d = static_cast<uint64_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        d = static_cast<uint64_t>(c - 'a' + 10);
      } else {
        return false;
      }
      v[i / 16] = (v[i / 16] << 4) | d;
    }
    *rule = id.substr(0, id.size() - 33);
    *h1 = v[0];
    *h2 = v[1];
    return true;
  }

 private:
  struct Key {
    uint64_t h1;
    uint64_t h2;
    uint32_t rule;
    bool operator==(const Key& o) const { return h1 == o.h1 && h2 == o.h2 && rule == o.rule; }
    // h1 is already a well-mixed fingerprint.
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.h1, k.rule);
    }
  };

  // The rows live in fixed blocks rather than one vector: growing never
  // copies them (crossing a power of two used to copy every row, stalling one
  // Advance and faulting in twice the memory), and a row never moves. Block
  // memory is raw: a row is constructed when added, and needs no destructor.
  static_assert(std::is_trivially_copyable_v<StoredAction> &&
                std::is_trivially_destructible_v<StoredAction>);
  static constexpr int kBlockBits = 12;
  static constexpr uint32_t kBlockSize = 1u << kBlockBits;
  struct FreeBlock {
    void operator()(StoredAction* p) const { ::operator delete(p); }
  };
  std::vector<std::unique_ptr<StoredAction[], FreeBlock>> blocks_;
  uint32_t size_ = 0;
  absl::flat_hash_map<Key, uint32_t> index_;
  StringPool pool_;
};

}  // namespace rapport::rules

#endif  // RAPPORT_LIB_RULES_ACTION_STORE_H_
