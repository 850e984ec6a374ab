// The ids of accepted events with the fingerprint of their content, in
// arrival order: the idempotency index (SPEC §2).
#ifndef RAPPORT_LIB_STATE_EVENT_ID_LOG_H_
#define RAPPORT_LIB_STATE_EVENT_ID_LOG_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace rapport {

class EventIdLog {
 public:
  EventIdLog() = default;
  EventIdLog(const EventIdLog&) = delete;
  EventIdLog& operator=(const EventIdLog&) = delete;

  // The hash the log files `id` under. Ingest computes it once per event and
  // hands it to Find and Add (and the batch overlay), which would otherwise
  // each hash the id again. Seeded per process like absl::Hash: never store it.
  static size_t Hash(absl::string_view id) { return absl::Hash<absl::string_view>{}(id); }

  // The fingerprint stored for `id`, or nullptr if the id is new. `hash` is
  // Hash(id).
  const uint64_t* Find(absl::string_view id, size_t hash) const {
    auto it = index_.find(Probe{id, hash});
    return it == index_.end() ? nullptr : &fingerprints_[it->index];
  }
  const uint64_t* Find(absl::string_view id) const { return Find(id, Hash(id)); }
  // Records a new id (the caller checked it is new; at most 128 bytes).
  // Returns the log's copy of it (what Stored returns).
  absl::string_view Add(absl::string_view id, size_t hash, uint64_t fingerprint);
  absl::string_view Add(absl::string_view id, uint64_t fingerprint) {
    return Add(id, Hash(id), fingerprint);
  }
  // Find and Add in one probe of the index, for ingest, which looks every
  // event's id up and records most of them: the fingerprint stored for `id`
  // if it is there (the log unchanged), else nullptr after recording `id`
  // with `fingerprint` (`*stored` then views the log's copy, what Add
  // returns). `hash` is Hash(id); `id` is at most 128 bytes. A caller that
  // then refuses the event takes the id back with Truncate(size() - 1).
  const uint64_t* FindOrAdd(absl::string_view id, size_t hash, uint64_t fingerprint,
                            absl::string_view* stored);

  // The log's own copy of a recorded id, or an empty view if the id is
  // unknown. Ids never move, so the view stays valid as long as the log:
  // the regulations' timers keep their causing event's id this way.
  absl::string_view Stored(absl::string_view id, size_t hash) const {
    auto it = index_.find(Probe{id, hash});
    return it == index_.end() ? absl::string_view() : absl::string_view(it->data, it->size);
  }
  absl::string_view Stored(absl::string_view id) const { return Stored(id, Hash(id)); }
  // The arrival index (0-based, what lengths() and fingerprints() are indexed
  // by) of a recorded id, or -1 if the id is unknown. `hash` is Hash(id).
  // Snapshots name a timer's causing event this way instead of by its id.
  int64_t IndexOf(absl::string_view id, size_t hash) const {
    auto it = index_.find(Probe{id, hash});
    return it == index_.end() ? -1 : static_cast<int64_t>(it->index);
  }
  // Where each id starts, in arrival order: the i-th id is
  // string_view(IdStarts()[i], lengths()[i]), the same bytes Stored views.
  // One pass over the lengths, for resolving many indexes at once (restore)
  // without a hash lookup each.
  std::vector<const char*> IdStarts() const;
  // IdStarts' answers without its pointer per id (80 MB at 10 M ids, the
  // restore's fresh pages): the start of every kStride-th id, and from there
  // at most kStride - 1 lengths, which share the cache lines of the length
  // the caller reads anyway. Built in one pass over the lengths; valid until
  // the log changes.
  class StartFinder {
   public:
    explicit StartFinder(const EventIdLog& log);
    // Where the i-th id starts; i < log.size().
    const char* Start(size_t i) const;

   private:
    static constexpr size_t kStride = 16;
    struct Mark {
      size_t block;  // into blocks_
      size_t at;     // the id's offset in that block
    };
    const EventIdLog& log_;
    std::vector<Mark> marks_;  // of ids 0, kStride, 2 kStride, ...
  };
  // Finds the arrival indexes of stored ids from their views alone (the data
  // pointer Add or Stored returned), without hashing the ids: a pointer's
  // block and 64-byte chunk lead to the first id starting in that chunk, and
  // at most a few lengths from there to the id. Built in one pass over the
  // lengths; valid until the log changes. The snapshot writer resolves every
  // timer's cause this way.
  class Locator {
   public:
    explicit Locator(const EventIdLog& log);
    // The index of the id starting at `stored`, or -1 if no stored id starts
    // there.
    int64_t IndexOf(const char* stored) const;

   private:
    static constexpr size_t kChunkBytes = 64;
    struct Span {
      const char* begin;
      const char* end;   // begin + the block's used bytes
      size_t chunks_at;  // this block's first entry in chunks_
    };
    struct Chunk {
      uint32_t index;   // the first id starting at or after the chunk's start
      uint32_t offset;  // where that id starts, from the block's start
    };
    const std::vector<uint32_t>& lengths_;
    std::vector<Span> spans_;  // by begin address
    std::vector<Chunk> chunks_;
  };

  // Starts loading the memory a Find or Stored of `id` will touch, so that a
  // loop of lookups (restore) overlaps their cache misses. `hash` is Hash(id).
  void Prefetch(absl::string_view id, size_t hash) const { index_.prefetch(Probe{id, hash}); }

  // Removes the ids recorded after the first `n` (the log's size() when a
  // batch started recording), as if they had never been added: a failed batch
  // takes back the ids it recorded while it was validated. `n` <= size().
  void Truncate(size_t n);

  size_t size() const { return fingerprints_.size(); }
  const std::vector<uint64_t>& fingerprints() const { return fingerprints_; }
  const std::vector<uint32_t>& lengths() const { return lengths_; }
  // Appends every id, back to back in arrival order, to `out`.
  void AppendIds(std::string* out) const;
  // Calls f(absl::string_view) on pieces that, back to back, are every id in
  // arrival order (what AppendIds appends), without copying them.
  template <typename F>
  void ForEachIdChunk(F f) const {
    for (const Block& b : blocks_) f(absl::string_view(b.data, b.used));
  }
  // Bytes of all ids together.
  size_t id_bytes() const { return id_bytes_; }

  // Replaces the contents with ids stored back to back in `ids`, split by
  // `lengths`. With `borrow`, the log keeps viewing `ids` instead of copying
  // it, so `ids` must outlive the log. Errors: INVALID_ARGUMENT when the parts
  // disagree, an id is empty or over `max_id_bytes`, or an id repeats.
  absl::Status Load(absl::string_view ids, absl::Span<const uint32_t> lengths,
                    absl::Span<const uint64_t> fingerprints, size_t max_id_bytes,
                    bool borrow = false);
  // The capacity Load gives the per-id vectors for `n` ids: half as many
  // again, what a log that grew by doubling holds on average, so that the
  // journal tail replayed after a restore (up to snapshot_every_bytes of
  // events) mostly fits without a copy of the whole log.
  static size_t LoadRoom(size_t n) { return n + n / 2; }

 private:
  // Ids live in fixed blocks that never move, so the index can view them
  // without a string per id.
  struct Block {
    std::unique_ptr<char[]> owned;
    char* data = nullptr;  // owned.get(), or borrowed
    size_t size = 0;
    size_t used = 0;
  };
  static constexpr size_t kBlockBytes = 1 << 20;

  // Copies `id` to the end of the last block (starting a block if it does
  // not fit) without counting it as used, and returns where it is: Add and
  // FindOrAdd file that place in the index, then Keep it.
  char* CopyToEnd(absl::string_view id);
  // Counts the id CopyToEnd copied as stored, with its fingerprint.
  void Keep(size_t id_size, uint64_t fingerprint);

  // The index holds each id's hash beside its view (24 bytes, the size of the
  // string_view + index pair it replaces), so a lookup never hashes an id
  // the caller hashed already, and growing the table never rehashes ids.
  struct Entry {
    const char* data;
    uint32_t size;
    uint32_t index;  // into fingerprints_
    size_t hash;     // Hash(id)
  };
  struct Probe {
    absl::string_view id;
    size_t hash;
  };
  struct EntryHash {
    using is_transparent = void;
    size_t operator()(const Entry& e) const { return e.hash; }
    size_t operator()(const Probe& p) const { return p.hash; }
  };
  struct EntryEq {
    using is_transparent = void;
    static absl::string_view View(const Entry& e) { return absl::string_view(e.data, e.size); }
    static absl::string_view View(const Probe& p) { return p.id; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return View(a) == View(b);
    }
  };

  std::vector<Block> blocks_;
  std::vector<uint64_t> fingerprints_;
  std::vector<uint32_t> lengths_;
  size_t id_bytes_ = 0;
  absl::flat_hash_set<Entry, EntryHash, EntryEq> index_;
};

}  // namespace rapport

#endif  // RAPPORT_LIB_STATE_EVENT_ID_LOG_H_
