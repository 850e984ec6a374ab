#include "lib/state/event_id_log.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"
#include "lib/util/copy.h"
#include "lib/util/prefetch.h"

namespace rapport {

char* EventIdLog::CopyToEnd(absl::string_view id) {
  if (blocks_.empty() || blocks_.back().size - blocks_.back().used < id.size()) {
    Block b;
    b.size = std::max(kBlockBytes, id.size());
    b.owned.reset(new char[b.size]);
    b.data = b.owned.get();
    blocks_.push_back(std::move(b));
  }
  Block& b = blocks_.back();
  char* at = b.data + b.used;
  CopyShort(at, id.data(), id.size());
  return at;
}

void EventIdLog::Keep(size_t id_size, uint64_t fingerprint) {
  blocks_.back().used += id_size;
  id_bytes_ += id_size;
  fingerprints_.push_back(fingerprint);
  lengths_.push_back(static_cast<uint32_t>(id_size));
}

absl::string_view EventIdLog::Add(absl::string_view id, size_t hash, uint64_t fingerprint) {
  char* at = CopyToEnd(id);
  index_.insert(Entry{at, static_cast<uint32_t>(id.size()),
                      static_cast<uint32_t>(fingerprints_.size()), hash});
  Keep(id.size(), fingerprint);
  return absl::string_view(at, id.size());
}

const uint64_t* EventIdLog::FindOrAdd(absl::string_view id, size_t hash, uint64_t fingerprint,
                                      absl::string_view* stored) {
  // The id is copied before the probe, so that the entry an insert files can
  // view it; if the id is there already, the copy is simply not kept (nor
  // the block started for it).
  char* at = CopyToEnd(id);
  const auto [it, inserted] = index_.insert(Entry{
      at, static_cast<uint32_t>(id.size()), static_cast<uint32_t>(fingerprints_.size()), hash});
  if (!inserted) {
    if (blocks_.back().used == 0) blocks_.pop_back();  // started for this id: holds nothing
    return &fingerprints_[it->index];
  }
  Keep(id.size(), fingerprint);
  *stored = absl::string_view(at, id.size());
  return nullptr;
}

void EventIdLog::Truncate(size_t n) {
  // Undoes Add in reverse: each id is the last bytes of the last block, and a
  // block Add started for an id holds nothing once that id is gone.
  while (fingerprints_.size() > n) {
    const uint32_t len = lengths_.back();
    Block& b = blocks_.back();
    b.used -= len;
    const absl::string_view id(b.data + b.used, len);
    index_.erase(Probe{id, Hash(id)});
    if (b.used == 0) blocks_.pop_back();
    id_bytes_ -= len;
    fingerprints_.pop_back();
    lengths_.pop_back();
  }
}

std::vector<const char*> EventIdLog::IdStarts() const {
  std::vector<const char*> starts;
  starts.reserve(lengths_.size());
  size_t b = 0;
  size_t at = 0;
  for (uint32_t len : lengths_) {
    // An id never straddles two blocks: Add starts a new block for an id
    // that does not fit in the last one, whose tail then stays unused.
    while (b < blocks_.size() && at + len > blocks_[b].used) {
      ++b;
      at = 0;
    }
    starts.push_back(blocks_[b].data + at);
    at += len;
  }
  return starts;
}

EventIdLog::StartFinder::StartFinder(const EventIdLog& log) : log_(log) {
  const size_t n = log.lengths_.size();
  marks_.reserve((n + kStride - 1) / kStride);
  size_t b = 0;
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t len = log.lengths_[i];
    // As in IdStarts: an id that does not fit in a block starts the next.
    while (b < log.blocks_.size() && at + len > log.blocks_[b].used) {
      ++b;
      at = 0;
    }
    if (i % kStride == 0) marks_.push_back(Mark{b, at});
    at += len;
  }
}

const char* EventIdLog::StartFinder::Start(size_t i) const {
  const Mark& m = marks_[i / kStride];
  const uint32_t* const len = log_.lengths_.data();
  size_t b = m.block;
  size_t at = m.at;
  for (size_t j = i - i % kStride; j < i; ++j) {
    at += len[j];
    while (at + len[j + 1] > log_.blocks_[b].used) {
      ++b;
      at = 0;
    }
  }
  return log_.blocks_[b].data + at;
}

EventIdLog::Locator::Locator(const EventIdLog& log) : lengths_(log.lengths_) {
  spans_.reserve(log.blocks_.size());
  chunks_.reserve(log.id_bytes_ / kChunkBytes + 2 * log.blocks_.size());
  size_t i = 0;
  const size_t n = log.lengths_.size();
  for (const Block& b : log.blocks_) {
    spans_.push_back(Span{b.data, b.data + b.used, chunks_.size()});
    // The ids in this block are the next ones in arrival order, exactly
    // b.used bytes of them (Add never splits an id across blocks, Truncate
    // takes whole ids off the end). Chunk c gets the first id starting at or
    // after c * kChunkBytes: with c * kChunkBytes < b.used that id is in
    // this block.
    size_t at = 0;
    for (size_t c = 0; c * kChunkBytes < b.used; ++c) {
      while (at < c * kChunkBytes && i < n) at += log.lengths_[i++];
      chunks_.push_back(Chunk{static_cast<uint32_t>(i), static_cast<uint32_t>(at)});
    }
    while (at < b.used && i < n) at += log.lengths_[i++];
  }
  std::sort(spans_.begin(), spans_.end(),
            [](const Span& a, const Span& b) { return std::less<>()(a.begin, b.begin); });
}

int64_t EventIdLog::Locator::IndexOf(const char* stored) const {
  // The last span beginning at or before `stored`.
  auto it =
      std::upper_bound(spans_.begin(), spans_.end(), stored,
                       [](const char* p, const Span& sp) { return std::less<>()(p, sp.begin); });
  if (it == spans_.begin()) return -1;
  --it;
  if (!std::less<>()(stored, it->end)) return -1;
  const size_t offset = static_cast<size_t>(stored - it->begin);
  const Chunk& c = chunks_[it->chunks_at + offset / kChunkBytes];
  size_t index = c.index;
  size_t at = c.offset;
  // Every id starting in the chunk starts within kChunkBytes of c.offset.
  while (at < offset && index < lengths_.size()) at += lengths_[index++];
  return at == offset && index < lengths_.size() ? static_cast<int64_t>(index) : -1;
}

void EventIdLog::AppendIds(std::string* out) const {
  out->reserve(out->size() + id_bytes_);
  for (const Block& b : blocks_) out->append(b.data, b.used);
}

absl::Status EventIdLog::Load(absl::string_view ids, absl::Span<const uint32_t> lengths,
                              absl::Span<const uint64_t> fingerprints, size_t max_id_bytes,
                              bool borrow) {
  if (lengths.size() != fingerprints.size()) {
    return absl::InvalidArgumentError(absl::StrCat(lengths.size(), " event id lengths but ",
                                                   fingerprints.size(), " fingerprints"));
  }
  size_t total = 0;
  for (uint32_t n : lengths) {
    if (n == 0 || n > max_id_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("an event id length of ", n, " is outside 1..", max_id_bytes));
    }
    total += n;
  }
  if (total != ids.size()) {
    return absl::InvalidArgumentError(absl::StrCat("event id lengths add up to ", total,
                                                   " bytes but ", ids.size(), " are stored"));
  }
  blocks_.clear();
  index_.clear();
  Block b;
  b.size = ids.size();
  b.used = ids.size();
  if (borrow) {
    // Never written to: a borrowed block is always full.
    b.data = const_cast<char*>(ids.data());
  } else {
    b.owned.reset(new char[std::max<size_t>(ids.size(), 1)]);
    b.data = b.owned.get();
    std::memcpy(b.data, ids.data(), ids.size());
  }
  const char* at = b.data;
  blocks_.push_back(std::move(b));
  // A million ids make a table far larger than the caches, so each insert
  // would wait for memory: ForEachHashedAhead hashes and prefetches the id 16
  // places later while this one is inserted.
  index_.reserve(lengths.size());
  const char* ahead_at = at;
  // Unchecked reads: absl's hardened Span::operator[] tests every index.
  const uint32_t* const len = lengths.data();
  absl::Status st = ForEachHashedAhead<16>(
      lengths.size(),
      [&](size_t j) {
        const absl::string_view id(ahead_at, len[j]);
        ahead_at += len[j];
        const size_t hash = Hash(id);
        index_.prefetch(Probe{id, hash});
        return hash;
      },
      [&](size_t i, size_t hash) -> absl::Status {
        const Entry e{at, len[i], static_cast<uint32_t>(i), hash};
        at += len[i];
        if (!index_.insert(e).second) {
          return absl::InvalidArgumentError(
              absl::StrCat("event id '", absl::string_view(e.data, e.size), "' is repeated"));
        }
        return absl::OkStatus();
      });
  if (!st.ok()) return st;
  // Room for the ids that come next (a restored engine replays its journal
  // tail at once): a vector filled to exactly its size doubles at the first
  // Add, copying every fingerprint and length (~120 MB at 10 M ids) into
  // fresh pages, on the recovery's critical path. The room is only address
  // space until used.
  const size_t room = LoadRoom(lengths.size());
  fingerprints_.clear();
  fingerprints_.reserve(room);
  fingerprints_.assign(fingerprints.begin(), fingerprints.end());
  lengths_.clear();
  lengths_.reserve(room);
  lengths_.assign(lengths.begin(), lengths.end());
  id_bytes_ = ids.size();
  return absl::OkStatus();
}

}  // namespace rapport
