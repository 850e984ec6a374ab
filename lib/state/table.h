// A table of rows keyed by string id, kept in insertion order.
//
// Insertion order makes iteration (and so snapshots and listings)
// deterministic without sorting, and gives each row a dense, stable index
// that other structures use instead of the string.
//
// Rows are protobuf messages allocated on the engine's arena: no malloc per
// row or per string field on the ingest path, and Restore keeps the messages
// it parsed where they are instead of copying them.
#ifndef RAPPORT_LIB_STATE_TABLE_H_
#define RAPPORT_LIB_STATE_TABLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/arena.h"

namespace rapport {

template <typename Row>
class Table {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  // Iterates rows as references, in insertion order.
  class Rows {
   public:
    class iterator {
     public:
      using value_type = Row;
      explicit iterator(Row* const* p) : p_(p) {}
      Row& operator*() const { return **p_; }
      Row* operator->() const { return *p_; }
      iterator& operator++() {
        ++p_;
        return *this;
      }
      bool operator!=(const iterator& o) const { return p_ != o.p_; }
      bool operator==(const iterator& o) const { return p_ == o.p_; }

     private:
      Row* const* p_;
    };
    explicit Rows(const std::vector<Row*>& rows) : rows_(rows) {}
    iterator begin() const { return iterator(rows_.data()); }
    iterator end() const { return iterator(rows_.data() + rows_.size()); }
    size_t size() const { return rows_.size(); }
    Row& operator[](size_t i) const { return *rows_[i]; }

   private:
    const std::vector<Row*>& rows_;
  };

  // `arena` outlives the table.
  explicit Table(google::protobuf::Arena* arena) : arena_(arena) {}
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  uint32_t IndexOf(absl::string_view id) const {
    auto it = index_.find(id);
    return it == index_.end() ? kNone : it->second;
  }
  // IndexOf for an id whose Hash the caller has: validation looks a new id up
  // here and in the batch's overlay, and files it there, with one hash.
  uint32_t IndexOf(absl::string_view id, size_t hash) const {
    auto it = index_.find(id, hash);
    return it == index_.end() ? kNone : it->second;
  }
  // Starts loading the memory IndexOf(id) will touch, so that a loop of
  // lookups in a table far larger than the caches (restore) overlaps their
  // misses.
  void Prefetch(absl::string_view id) const { index_.prefetch(id); }
  // The hash the index files `id` under (the same for every table).
  static size_t Hash(absl::string_view id) { return Index::hasher{}(id); }
  const Row* Find(absl::string_view id) const {
    uint32_t i = IndexOf(id);
    return i == kNone ? nullptr : rows_[i];
  }
  Row* Find(absl::string_view id) {
    uint32_t i = IndexOf(id);
    return i == kNone ? nullptr : rows_[i];
  }
  // Appends a default row for a new id; the caller checked it is new.
  Row& Insert(absl::string_view id) {
    return *Adopt(id, google::protobuf::Arena::CreateMessage<Row>(arena_));
  }
  // Appends a row that lives on the same arena (Restore); returns it.
  Row* Adopt(absl::string_view id, Row* row) {
    index_.emplace(std::string(id), static_cast<uint32_t>(rows_.size()));
    rows_.push_back(row);
    return row;
  }
  // Adopt for an id that may be in the table already (Restore): one hash and
  // one probe instead of a Find's and an Adopt's. Adopts nothing and returns
  // false if `id` is there.
  bool TryAdopt(absl::string_view id, Row* row) {
    if (!index_.try_emplace(std::string(id), static_cast<uint32_t>(rows_.size())).second) {
      return false;
    }
    rows_.push_back(row);
    return true;
  }
  Row& at(uint32_t i) { return *rows_[i]; }
  const Row& at(uint32_t i) const { return *rows_[i]; }
  size_t size() const { return rows_.size(); }
  Rows rows() const { return Rows(rows_); }
  void Reserve(size_t n) {
    index_.reserve(n);
    rows_.reserve(n);
  }

 private:
  google::protobuf::Arena* arena_;
  using Index = absl::flat_hash_map<std::string, uint32_t>;
  std::vector<Row*> rows_;
  Index index_;
};

}  // namespace rapport

#endif  // RAPPORT_LIB_STATE_TABLE_H_
