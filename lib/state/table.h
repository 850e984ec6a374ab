// A table of rows keyed by string id, kept in insertion order.
//
// Insertion order makes iteration (and so snapshots and listings)
// deterministic without sorting, and gives each row a dense, stable index
// that other structures use instead of the string.
#ifndef RAPPORT_LIB_STATE_TABLE_H_
#define RAPPORT_LIB_STATE_TABLE_H_

#include <cstdint>
#include <deque>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace rapport {

template <typename Row>
class Table {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  uint32_t IndexOf(absl::string_view id) const {
    auto it = index_.find(id);
    return it == index_.end() ? kNone : it->second;
  }
  const Row* Find(absl::string_view id) const {
    uint32_t i = IndexOf(id);
    return i == kNone ? nullptr : &rows_[i];
  }
  Row* Find(absl::string_view id) {
    uint32_t i = IndexOf(id);
    return i == kNone ? nullptr : &rows_[i];
  }
  // Appends a default row for a new id; the caller checked it is new.
  Row& Insert(absl::string_view id) {
    index_.emplace(std::string(id), static_cast<uint32_t>(rows_.size()));
    return rows_.emplace_back();
  }
  Row& at(uint32_t i) { return rows_[i]; }
  const Row& at(uint32_t i) const { return rows_[i]; }
  size_t size() const { return rows_.size(); }
  const std::deque<Row>& rows() const { return rows_; }
  std::deque<Row>& rows() { return rows_; }
  void Reserve(size_t n) { index_.reserve(n); }

 private:
  // A deque keeps rows in place as the table grows.
  std::deque<Row> rows_;
  absl::flat_hash_map<std::string, uint32_t> index_;
};

}  // namespace rapport

#endif  // RAPPORT_LIB_STATE_TABLE_H_
