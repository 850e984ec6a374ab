// The C ABI over the C++ engine. Every entry point catches everything: no
// exception crosses the boundary, and every failure becomes a status code
// plus a thread-local message.
#include "rapport/rapport.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "lib/c_api/adopt.h"
#include "rapport/engine.h"
#include "rapport/json.h"
#include "rapport/v1/snapshot.pb.h"

struct rapport_engine {
  explicit rapport_engine(std::unique_ptr<rapport::Engine> e) : engine(std::move(e)) {}
  std::unique_ptr<rapport::Engine> engine;
  // rapport_advance's list, cleared and refilled by Engine::AdvanceInto on
  // every call so that its actions' storage is reused: a new list (on the
  // heap or on an arena) costs as much again as firing the timers, mostly in
  // page faults on fresh memory. Guarded by its mutex, since the list is
  // serialized after the engine's own lock is released.
  std::mutex advance_mu;
  rapport::v1::ActionList advance_list;
};

rapport_engine* rapport::c_api::AdoptEngine(std::unique_ptr<Engine> engine) {
  return new rapport_engine(std::move(engine));
}

namespace {

using rapport::v1::Event;
using rapport::v1::EventBatch;

thread_local std::string g_last_error;

int Fail(const absl::Status& st) {
  g_last_error = std::string(st.message());
  return static_cast<int>(st.code());
}

int FailWith(int code, std::string message) {
  g_last_error = std::move(message);
  return code;
}

bool IsJson(int format) {
  return format == RAPPORT_FORMAT_JSON || format == RAPPORT_FORMAT_JSON_LINES;
}

absl::Status CheckInput(const uint8_t* data, size_t len, const char* what) {
  if (data == nullptr && len != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is NULL with a length of ", len));
  }
  if (len > RAPPORT_MAX_INPUT_BYTES) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, " is ", len, " bytes; the limit is ", RAPPORT_MAX_INPUT_BYTES));
  }
  return absl::OkStatus();
}

absl::Status CheckFormat(int format, bool streams_allowed) {
  if (format == RAPPORT_FORMAT_PROTOBUF || format == RAPPORT_FORMAT_JSON) return absl::OkStatus();
  if (streams_allowed &&
      (format == RAPPORT_FORMAT_PROTOBUF_DELIMITED || format == RAPPORT_FORMAT_JSON_LINES)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("format ", format, " is not valid here"));
}

absl::string_view View(const uint8_t* data, size_t len) {
  return absl::string_view(reinterpret_cast<const char*>(data), len);
}

absl::Status Parse(const uint8_t* data, size_t len, int format, google::protobuf::Message* m) {
  if (format == RAPPORT_FORMAT_JSON) return rapport::FromJson(View(data, len), m);
  if (len > static_cast<size_t>(INT32_MAX) || !m->ParseFromArray(data, static_cast<int>(len))) {
    return absl::InvalidArgumentError(
        absl::StrCat("the bytes are not a valid ", m->GetTypeName(), " (protobuf)"));
  }
  return absl::OkStatus();
}

// Every buffer handed to the caller comes from malloc, so that rapport_free()
// is a plain free() whatever allocator the C++ side uses. One extra NUL byte
// lets JSON results be read as C strings.
int EmitBytes(absl::string_view bytes, uint8_t** out, size_t* out_len) {
  auto* buf = static_cast<uint8_t*>(std::malloc(bytes.size() + 1));
  if (buf == nullptr) return FailWith(RAPPORT_RESOURCE_EXHAUSTED, "out of memory");
  if (!bytes.empty()) std::memcpy(buf, bytes.data(), bytes.size());
  buf[bytes.size()] = 0;
  *out = buf;
  *out_len = bytes.size();
  return RAPPORT_OK;
}

// Serializes `m` in the output family of `format` into a malloc'ed buffer.
int Emit(const google::protobuf::Message& m, int format, uint8_t** out, size_t* out_len) {
  if (IsJson(format)) {
    absl::StatusOr<std::string> json = rapport::ToJson(m);
    if (!json.ok()) return Fail(json.status());
    return EmitBytes(*json, out, out_len);
  }
  // Straight into the caller's buffer: no intermediate std::string, which
  // matters for snapshots and large reports.
  const size_t size = m.ByteSizeLong();
  if (size > static_cast<size_t>(INT32_MAX)) {
    return FailWith(RAPPORT_RESOURCE_EXHAUSTED,
                    absl::StrCat(m.GetTypeName(), " is over 2 GiB serialized"));
  }
  auto* buf = static_cast<uint8_t*>(std::malloc(size + 1));
  if (buf == nullptr) return FailWith(RAPPORT_RESOURCE_EXHAUSTED, "out of memory");
  m.SerializeWithCachedSizesToArray(buf);
  buf[size] = 0;
  *out = buf;
  *out_len = size;
  return RAPPORT_OK;
}

void ClearOut(uint8_t** out, size_t* out_len) {
  if (out != nullptr) *out = nullptr;
  if (out_len != nullptr) *out_len = 0;
}

// The first check of every call that returns a buffer from an engine: the
// output is cleared (so a failed call hands back nothing to free) and none of
// the three may be NULL.
absl::Status ClearAndCheckOut(uint8_t** out, size_t* out_len, const rapport_engine* engine) {
  ClearOut(out, out_len);
  if (out == nullptr || out_len == nullptr || engine == nullptr) {
    return absl::InvalidArgumentError("out, out_len and engine must not be NULL");
  }
  return absl::OkStatus();
}

// Runs `body`, turning any exception into a status code.
template <typename Body>
int Guard(Body body) {
  try {
    g_last_error.clear();
    return body();
  } catch (const std::bad_alloc&) {
    return FailWith(RAPPORT_RESOURCE_EXHAUSTED, "out of memory");
  } catch (const std::exception& e) {
    return FailWith(RAPPORT_INTERNAL, absl::StrCat("internal error: ", e.what()));
  } catch (...) {
    return FailWith(RAPPORT_INTERNAL, "internal error");
  }
}

// A delimited stream rewritten as the wire format of a rapport.v1.EventBatch
// (a field-1 tag and a canonical length before each event) and parsed in one
// call: the generated parser then reads the events inline, where
// MergeFromCodedStream per event sets up a parse context for each (about a
// sixth of the parse). A message parsed from a length-delimited field is the
// message parsed from those bytes alone, so the batch is the one the
// per-event loop builds. Returns false, with `batch` in any state, on
// anything unusual (a prefix over 5 bytes or INT32_MAX, a truncated event,
// too many events, bytes that do not parse): the per-event loop then runs
// on a cleared batch and is the authority on every error.
bool ParseDelimitedAsBatch(const uint8_t* data, size_t len, EventBatch* batch) {
  // Kept per thread, so that a batch after batch reuses one buffer; one
  // grown past 4 MiB is let go.
  thread_local std::string wire;
  wire.clear();
  wire.reserve(len + len / 8 + 16);
  size_t at = 0;
  size_t events = 0;
  bool ok = true;
  while (at < len) {
    // At most 5 bytes, as CodedInputStream::ReadVarint32 reads a canonical
    // 32-bit varint; a longer one is the per-event loop's to judge.
    uint64_t size = 0;
    bool ended = false;
    for (int shift = 0; shift <= 28 && at < len; shift += 7) {
      const uint8_t b = data[at++];
      size |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        ended = true;
        break;
      }
    }
    if (!ended || size > static_cast<uint64_t>(INT32_MAX) || size > len - at ||
        ++events > RAPPORT_MAX_BATCH_EVENTS) {
      ok = false;
      break;
    }
    char prefix[6];
    size_t n = 0;
    prefix[n++] = 0x0a;  // EventBatch.events: field 1, length-delimited
    for (uint64_t v = size;; v >>= 7) {
      if (v < 0x80) {
        prefix[n++] = static_cast<char>(v);
        break;
      }
      prefix[n++] = static_cast<char>(v | 0x80);
    }
    wire.append(prefix, n);
    wire.append(reinterpret_cast<const char*>(data) + at, size);
    at += size;
  }
  ok = ok && wire.size() <= static_cast<size_t>(INT32_MAX) &&
       batch->ParseFromArray(wire.data(), static_cast<int>(wire.size())) &&
       static_cast<size_t>(batch->events_size()) == events;
  if (wire.capacity() > (size_t{4} << 20)) std::string().swap(wire);
  return ok;
}

absl::Status ParseBatch(const uint8_t* data, size_t len, int format, EventBatch* batch) {
  switch (format) {
    case RAPPORT_FORMAT_PROTOBUF:
    case RAPPORT_FORMAT_JSON:
      return Parse(data, len, format, batch);
    case RAPPORT_FORMAT_JSON_LINES: {
      // rapport::EventsFromJsonLines line for line (same lines skipped, same
      // errors), but each line is parsed straight into the arena batch: no
      // heap Event per line and no deep copy into the batch afterwards.
      int line_no = 0;
      for (absl::string_view line : absl::StrSplit(View(data, len), '\n')) {
        ++line_no;
        line = absl::StripAsciiWhitespace(line);
        if (line.empty()) continue;
        if (absl::Status st = rapport::FromJson(line, batch->add_events()); !st.ok()) {
          return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", st.message()));
        }
      }
      return absl::OkStatus();
    }
    case RAPPORT_FORMAT_PROTOBUF_DELIMITED: {
      if (ParseDelimitedAsBatch(data, len, batch)) return absl::OkStatus();
      batch->Clear();
      // One CodedInputStream over the whole buffer (at most
      // RAPPORT_MAX_INPUT_BYTES, far below its 2 GiB limit): constructing a
      // stream per event costs more than parsing a small event.
      google::protobuf::io::CodedInputStream in(data, static_cast<int>(len));
      for (int64_t i = 0; static_cast<size_t>(in.CurrentPosition()) < len; ++i) {
        if (static_cast<size_t>(i) >= RAPPORT_MAX_BATCH_EVENTS) {
          return absl::ResourceExhaustedError(
              absl::StrCat("delimited stream: more than ", RAPPORT_MAX_BATCH_EVENTS, " events"));
        }
        uint32_t size = 0;
        if (!in.ReadVarint32(&size)) {
          return absl::InvalidArgumentError(
              absl::StrCat("delimited stream: event ", i, " has a malformed length prefix"));
        }
        const size_t left = len - static_cast<size_t>(in.CurrentPosition());
        if (size > left) {
          return absl::InvalidArgumentError(absl::StrCat("delimited stream: event ", i, " is ",
                                                         size, " bytes but only ", left,
                                                         " remain (truncated)"));
        }
        const auto limit = in.PushLimit(static_cast<int>(size));
        Event* e = batch->add_events();
        if (!e->MergeFromCodedStream(&in) || !in.ConsumedEntireMessage() ||
            in.BytesUntilLimit() != 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("delimited stream: event ", i, " is not a valid rapport.v1.Event"));
        }
        in.PopLimit(limit);
      }
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("format ", format, " is not valid here"));
  }
}

}  // namespace

extern "C" {

int32_t rapport_version_number(void) { return RAPPORT_VERSION_NUMBER; }

const char* rapport_last_error_message(void) { return g_last_error.c_str(); }

void rapport_free(void* buffer) { std::free(buffer); }

int rapport_engine_create(rapport_engine** out, const uint8_t* config, size_t config_len,
                          int format) {
  return Guard([&] {
    if (out == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "out is NULL");
    *out = nullptr;
    if (absl::Status st = CheckInput(config, config_len, "config"); !st.ok()) return Fail(st);
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    rapport::v1::EngineConfig cfg;
    if (config_len > 0) {
      if (absl::Status st = Parse(config, config_len, format, &cfg); !st.ok()) return Fail(st);
    }
    auto engine = rapport::Engine::Create(cfg);
    if (!engine.ok()) return Fail(engine.status());
    *out = new rapport_engine{*std::move(engine)};
    return RAPPORT_OK;
  });
}

void rapport_engine_destroy(rapport_engine* engine) { delete engine; }

int rapport_engine_restore(rapport_engine** out, const uint8_t* snapshot, size_t snapshot_len,
                           int format) {
  return Guard([&] {
    if (out == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "out is NULL");
    *out = nullptr;
    if (absl::Status st = CheckInput(snapshot, snapshot_len, "snapshot"); !st.ok()) return Fail(st);
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    absl::StatusOr<std::unique_ptr<rapport::Engine>> engine;
    if (format == RAPPORT_FORMAT_JSON) {
      rapport::v1::EngineSnapshot snap;
      if (absl::Status st = Parse(snapshot, snapshot_len, format, &snap); !st.ok()) return Fail(st);
      engine = rapport::Engine::Restore(snap.SerializeAsString());
    } else {
      engine = rapport::Engine::Restore(View(snapshot, snapshot_len));
    }
    if (!engine.ok()) return Fail(engine.status());
    *out = new rapport_engine{*std::move(engine)};
    return RAPPORT_OK;
  });
}

int rapport_engine_snapshot(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                            int format) {
  return Guard([&] {
    if (absl::Status st = ClearAndCheckOut(out, out_len, engine); !st.ok()) return Fail(st);
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    absl::StatusOr<std::string> bytes = engine->engine->Snapshot();
    if (!bytes.ok()) return Fail(bytes.status());
    if (format == RAPPORT_FORMAT_JSON) {
      rapport::v1::EngineSnapshot snap;
      if (!snap.ParseFromString(*bytes))
        return FailWith(RAPPORT_INTERNAL, "snapshot does not parse");
      return Emit(snap, format, out, out_len);
    }
    // The engine's own deterministic bytes, not a re-serialization.
    return EmitBytes(*bytes, out, out_len);
  });
}

int rapport_ingest_event(uint8_t** result, size_t* result_len, rapport_engine* engine,
                         const uint8_t* event, size_t event_len, int format) {
  return Guard([&] {
    ClearOut(result, result_len);
    if (engine == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    if ((result == nullptr) != (result_len == nullptr)) {
      return FailWith(RAPPORT_INVALID_ARGUMENT,
                      "result and result_len must both be NULL or both set");
    }
    if (absl::Status st = CheckInput(event, event_len, "event"); !st.ok()) return Fail(st);
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    Event e;
    if (absl::Status st = Parse(event, event_len, format, &e); !st.ok()) return Fail(st);
    auto r = engine->engine->Ingest(e);
    if (!r.ok()) return Fail(r.status());
    return result == nullptr ? RAPPORT_OK : Emit(*r, format, result, result_len);
  });
}

int rapport_ingest_batch(uint8_t** result, size_t* result_len, rapport_engine* engine,
                         const uint8_t* events, size_t events_len, int format, int mode) {
  return rapport_ingest_batch_v2(result, result_len, engine, events, events_len, format, mode,
                                 IsJson(format) ? RAPPORT_FORMAT_JSON : RAPPORT_FORMAT_PROTOBUF);
}

int rapport_ingest_batch_v2(uint8_t** result, size_t* result_len, rapport_engine* engine,
                            const uint8_t* events, size_t events_len, int format, int mode,
                            int result_format) {
  return Guard([&] {
    ClearOut(result, result_len);
    if (engine == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    if ((result == nullptr) != (result_len == nullptr)) {
      return FailWith(RAPPORT_INVALID_ARGUMENT,
                      "result and result_len must both be NULL or both set");
    }
    if (mode != RAPPORT_BATCH_ATOMIC && mode != RAPPORT_BATCH_BEST_EFFORT) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, absl::StrCat("batch mode ", mode, " is not valid"));
    }
    if (absl::Status st = CheckInput(events, events_len, "events"); !st.ok()) return Fail(st);
    if (absl::Status st = CheckFormat(format, true); !st.ok()) return Fail(st);
    if (result_format != RAPPORT_FORMAT_PROTOBUF && result_format != RAPPORT_FORMAT_JSON) {
      return FailWith(RAPPORT_INVALID_ARGUMENT,
                      absl::StrCat("result format ", result_format, " is not valid here"));
    }
    // The parsed batch lives on an arena: one free for thousands of small
    // messages, which is most of the C ABI's cost over the C++ API.
    google::protobuf::Arena arena;
    auto* batch = google::protobuf::Arena::CreateMessage<EventBatch>(&arena);
    if (absl::Status st = ParseBatch(events, events_len, format, batch); !st.ok()) return Fail(st);
    rapport::IngestOptions options;
    options.mode = mode == RAPPORT_BATCH_BEST_EFFORT ? rapport::BatchMode::kBestEffort
                                                     : rapport::BatchMode::kAtomic;
    auto r = engine->engine->IngestBatch(*batch, options);
    if (!r.ok()) return Fail(r.status());
    return result == nullptr ? RAPPORT_OK : Emit(*r, result_format, result, result_len);
  });
}

int rapport_advance(uint8_t** actions, size_t* actions_len, rapport_engine* engine, int64_t now_us,
                    int format) {
  return Guard([&] {
    ClearOut(actions, actions_len);
    if (engine == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    if ((actions == nullptr) != (actions_len == nullptr)) {
      return FailWith(RAPPORT_INVALID_ARGUMENT,
                      "actions and actions_len must both be NULL or both set");
    }
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    // Engine::Advance would build a new heap ActionList (about 9
    // allocations and 550 B per action) only for it to be serialized and
    // freed here: the engine's kept list is refilled instead.
    std::lock_guard<std::mutex> lock(engine->advance_mu);
    rapport::v1::ActionList& list = engine->advance_list;
    absl::Status st = engine->engine->AdvanceInto(now_us, &list);
    const int rc = !st.ok()             ? Fail(st)
                   : actions == nullptr ? RAPPORT_OK
                                        : Emit(list, format, actions, actions_len);
    // The list keeps the storage of its largest result; past this many
    // actions (about 18 MB) it is let go rather than held for the engine's
    // lifetime.
    constexpr int kKeepActions = 32768;
    if (list.actions_size() > kKeepActions) list = rapport::v1::ActionList();
    return rc;
  });
}

}  // extern "C"

namespace {

template <typename Getter>
int GetById(uint8_t** out, size_t* out_len, const rapport_engine* engine, const char* id,
            size_t id_len, int format, Getter get) {
  return Guard([&] {
    if (absl::Status st = ClearAndCheckOut(out, out_len, engine); !st.ok()) return Fail(st);
    if (id == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "id is NULL");
    if (id_len > rapport::kMaxIdBytes) {
      return FailWith(
          RAPPORT_INVALID_ARGUMENT,
          absl::StrCat("id is ", id_len, " bytes; the limit is ", rapport::kMaxIdBytes));
    }
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    auto r = get(*engine->engine, absl::string_view(id, id_len));
    if (!r.ok()) return Fail(r.status());
    return Emit(*r, format, out, out_len);
  });
}

}  // namespace

extern "C" {

int rapport_get_account(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                        const char* id, size_t id_len, int format) {
  return GetById(out, out_len, engine, id, id_len, format,
                 [](const rapport::Engine& e, absl::string_view i) { return e.GetAccount(i); });
}

int rapport_get_deal(uint8_t** out, size_t* out_len, const rapport_engine* engine, const char* id,
                     size_t id_len, int format) {
  return GetById(out, out_len, engine, id, id_len, format,
                 [](const rapport::Engine& e, absl::string_view i) { return e.GetDeal(i); });
}

int64_t rapport_events_accepted(const rapport_engine* engine) {
  if (engine == nullptr) return 0;
  try {
    return engine->engine->events_accepted();
  } catch (...) {
    return 0;
  }
}

int rapport_get_order(uint8_t** out, size_t* out_len, const rapport_engine* engine, const char* id,
                      size_t id_len, int format) {
  return GetById(out, out_len, engine, id, id_len, format,
                 [](const rapport::Engine& e, absl::string_view i) { return e.GetOrder(i); });
}

int rapport_get_manager(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                        const char* id, size_t id_len, int format) {
  return GetById(out, out_len, engine, id, id_len, format,
                 [](const rapport::Engine& e, absl::string_view i) { return e.GetManager(i); });
}

int rapport_get_team(uint8_t** out, size_t* out_len, const rapport_engine* engine, const char* id,
                     size_t id_len, int format) {
  return GetById(out, out_len, engine, id, id_len, format,
                 [](const rapport::Engine& e, absl::string_view i) { return e.GetTeam(i); });
}

int rapport_engine_config(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                          int format) {
  return Guard([&] {
    if (absl::Status st = ClearAndCheckOut(out, out_len, engine); !st.ok()) return Fail(st);
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    if (absl::Status st = engine->engine->Usable(); !st.ok()) return Fail(st);
    return Emit(engine->engine->config(), format, out, out_len);
  });
}

int64_t rapport_clock_us(const rapport_engine* engine) {
  if (engine == nullptr) return 0;
  try {
    return engine->engine->clock_us();
  } catch (...) {
    return 0;
  }
}

}  // extern "C"

namespace {

// The shape of rapport_kpis and rapport_kpi_partial: parse a query, run it on
// the engine, emit the result.
template <typename Run>
int RunQuery(uint8_t** out, size_t* out_len, const rapport_engine* engine, const uint8_t* query,
             size_t query_len, int format, Run run) {
  return Guard([&] {
    if (absl::Status st = ClearAndCheckOut(out, out_len, engine); !st.ok()) return Fail(st);
    if (absl::Status st = CheckInput(query, query_len, "query"); !st.ok()) return Fail(st);
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    rapport::v1::KpiQuery q;
    if (query_len > 0) {
      if (absl::Status st = Parse(query, query_len, format, &q); !st.ok()) return Fail(st);
    }
    auto r = run(*engine->engine, q);
    if (!r.ok()) return Fail(r.status());
    return Emit(*r, format, out, out_len);
  });
}

}  // namespace

extern "C" {

int rapport_kpis(uint8_t** out, size_t* out_len, const rapport_engine* engine, const uint8_t* query,
                 size_t query_len, int format) {
  return RunQuery(
      out, out_len, engine, query, query_len, format,
      [](const rapport::Engine& e, const rapport::v1::KpiQuery& q) { return e.Kpis(q); });
}

int rapport_kpi_partial(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                        const uint8_t* query, size_t query_len, int format) {
  return RunQuery(
      out, out_len, engine, query, query_len, format,
      [](const rapport::Engine& e, const rapport::v1::KpiQuery& q) { return e.KpiPartial(q); });
}

int rapport_kpi_merge(uint8_t** out, size_t* out_len, const uint8_t* const* partials,
                      const size_t* partial_lens, size_t count, int format) {
  return Guard([&] {
    ClearOut(out, out_len);
    if (out == nullptr || out_len == nullptr) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "out and out_len must not be NULL");
    }
    if (count == 0) return FailWith(RAPPORT_INVALID_ARGUMENT, "no partials to merge (count is 0)");
    if (partials == nullptr || partial_lens == nullptr) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "partials and partial_lens must not be NULL");
    }
    if (count > RAPPORT_MAX_BATCH_EVENTS) {
      return FailWith(RAPPORT_RESOURCE_EXHAUSTED,
                      absl::StrCat(count, " partials; the limit is ", RAPPORT_MAX_BATCH_EVENTS));
    }
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    std::vector<rapport::v1::KpiPartial> parts(count);
    size_t total = 0;
    for (size_t i = 0; i < count; ++i) {
      const std::string what = absl::StrCat("partial ", i);
      if (absl::Status st = CheckInput(partials[i], partial_lens[i], what.c_str()); !st.ok()) {
        return Fail(st);
      }
      total += partial_lens[i];
      if (total > RAPPORT_MAX_INPUT_BYTES) {
        return FailWith(RAPPORT_RESOURCE_EXHAUSTED,
                        absl::StrCat("the partials exceed ", RAPPORT_MAX_INPUT_BYTES, " bytes"));
      }
      if (absl::Status st = Parse(partials[i], partial_lens[i], format, &parts[i]); !st.ok()) {
        return FailWith(static_cast<int>(st.code()), absl::StrCat(what, ": ", st.message()));
      }
    }
    auto r = rapport::Engine::MergeKpiPartials(parts);
    if (!r.ok()) return Fail(r.status());
    return Emit(*r, format, out, out_len);
  });
}

int rapport_engine_open(rapport_engine** out, const char* dir, const uint8_t* config,
                        size_t config_len, int format, int sync_mode, int flags) {
  return rapport_engine_open_v2(out, dir, config, config_len, format, sync_mode, flags, -1, -1);
}

int rapport_engine_open_v2(rapport_engine** out, const char* dir, const uint8_t* config,
                           size_t config_len, int format, int sync_mode, int flags,
                           int64_t snapshot_every_bytes, int64_t segment_bytes) {
  return Guard([&] {
    if (out == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "out is NULL");
    *out = nullptr;
    if (dir == nullptr || dir[0] == 0) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "dir is NULL or empty");
    }
    if (absl::Status st = CheckInput(config, config_len, "config"); !st.ok()) return Fail(st);
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    rapport::OpenOptions options;
    switch (sync_mode) {
      case RAPPORT_SYNC_PER_BATCH:
        options.sync = rapport::SyncMode::kPerBatch;
        break;
      case RAPPORT_SYNC_GROUP_COMMIT:
        options.sync = rapport::SyncMode::kGroupCommit;
        break;
      case RAPPORT_SYNC_OFF:
        options.sync = rapport::SyncMode::kOff;
        break;
      default:
        return FailWith(RAPPORT_INVALID_ARGUMENT,
                        absl::StrCat("sync mode ", sync_mode, " is not valid"));
    }
    if ((flags & ~RAPPORT_OPEN_POINT_IN_TIME_RECOVERY) != 0) {
      return FailWith(RAPPORT_INVALID_ARGUMENT,
                      absl::StrCat("open flags ", flags, " include unknown bits"));
    }
    options.point_in_time_recovery = (flags & RAPPORT_OPEN_POINT_IN_TIME_RECOVERY) != 0;
    if (snapshot_every_bytes < -1) {
      return FailWith(RAPPORT_INVALID_ARGUMENT,
                      absl::StrCat("snapshot_every_bytes ", snapshot_every_bytes,
                                   " is below -1 (the default)"));
    }
    if (segment_bytes < -1 || segment_bytes == 0) {
      return FailWith(RAPPORT_INVALID_ARGUMENT,
                      absl::StrCat("segment_bytes ", segment_bytes,
                                   " is not a positive size or -1 (the default)"));
    }
    if (snapshot_every_bytes != -1) options.snapshot_every_bytes = snapshot_every_bytes;
    if (segment_bytes != -1) options.segment_bytes = segment_bytes;
    if (config_len > 0) {
      if (absl::Status st = Parse(config, config_len, format, &options.config); !st.ok()) {
        return Fail(st);
      }
    }
    auto engine = rapport::Engine::Open(dir, options);
    if (!engine.ok()) return Fail(engine.status());
    *out = new rapport_engine{*std::move(engine)};
    return RAPPORT_OK;
  });
}

int rapport_engine_checkpoint(rapport_engine* engine) {
  return Guard([&] {
    if (engine == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    if (absl::Status st = engine->engine->Checkpoint(); !st.ok()) return Fail(st);
    return RAPPORT_OK;
  });
}

int rapport_outbox(uint8_t** out, size_t* out_len, const rapport_engine* engine, int format) {
  return Guard([&] {
    if (absl::Status st = ClearAndCheckOut(out, out_len, engine); !st.ok()) return Fail(st);
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    if (absl::Status st = engine->engine->Usable(); !st.ok()) return Fail(st);
    return Emit(engine->engine->Outbox(), format, out, out_len);
  });
}

int rapport_acknowledge(rapport_engine* engine, const char* const* ids, const size_t* id_lens,
                        size_t count) {
  return Guard([&] {
    if (engine == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    if (count > 0 && (ids == nullptr || id_lens == nullptr)) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "ids and id_lens must not be NULL");
    }
    if (count > RAPPORT_MAX_BATCH_EVENTS) {
      return FailWith(RAPPORT_RESOURCE_EXHAUSTED,
                      absl::StrCat(count, " ids; the limit is ", RAPPORT_MAX_BATCH_EVENTS));
    }
    std::vector<std::string> list;
    list.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      if (ids[i] == nullptr) {
        return FailWith(RAPPORT_INVALID_ARGUMENT, absl::StrCat("ids[", i, "] is NULL"));
      }
      if (id_lens[i] > rapport::kMaxIdBytes) {
        return FailWith(RAPPORT_INVALID_ARGUMENT,
                        absl::StrCat("ids[", i, "] is ", id_lens[i], " bytes; the limit is ",
                                     rapport::kMaxIdBytes));
      }
      list.emplace_back(ids[i], id_lens[i]);
    }
    if (absl::Status st = engine->engine->Acknowledge(list); !st.ok()) return Fail(st);
    return RAPPORT_OK;
  });
}

int rapport_grades(uint8_t** out, size_t* out_len, const rapport_engine* engine, int64_t as_of_us,
                   int format) {
  return Guard([&] {
    if (absl::Status st = ClearAndCheckOut(out, out_len, engine); !st.ok()) return Fail(st);
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    auto r = engine->engine->Grades(as_of_us);
    if (!r.ok()) return Fail(r.status());
    return Emit(*r, format, out, out_len);
  });
}

}  // extern "C"

namespace {

// A list as a stream in `format` (PROTOBUF_DELIMITED or JSON_LINES).
template <typename T>
int EmitList(const std::vector<T>& items, int format, uint8_t** out, size_t* out_len) {
  std::string bytes;
  for (const T& m : items) {
    if (format == RAPPORT_FORMAT_JSON_LINES) {
      absl::StatusOr<std::string> json = rapport::ToJson(m);
      if (!json.ok()) return Fail(json.status());
      absl::StrAppend(&bytes, *json, "\n");
    } else {
      google::protobuf::io::StringOutputStream stream(&bytes);
      google::protobuf::io::CodedOutputStream coded(&stream);
      coded.WriteVarint32(static_cast<uint32_t>(m.ByteSizeLong()));
      m.SerializeWithCachedSizes(&coded);
    }
  }
  return EmitBytes(bytes, out, out_len);
}

absl::Status CheckListArgs(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                           int format) {
  if (absl::Status st = ClearAndCheckOut(out, out_len, engine); !st.ok()) return st;
  if (format != RAPPORT_FORMAT_PROTOBUF_DELIMITED && format != RAPPORT_FORMAT_JSON_LINES) {
    return absl::InvalidArgumentError(absl::StrCat(
        "format ", format, " is not valid here (lists are PROTOBUF_DELIMITED or JSON_LINES)"));
  }
  // The list reads answer empty on an engine that refuses every call: say why.
  return engine->engine->Usable();
}

}  // namespace

extern "C" {

int rapport_accounts_by_status(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                               int status, int format) {
  return Guard([&] {
    if (absl::Status st = CheckListArgs(out, out_len, engine, format); !st.ok()) return Fail(st);
    if (!rapport::v1::AccountStatus_IsValid(status)) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, absl::StrCat("account status ", status,
                                                             " is not a rapport.v1.AccountStatus"));
    }
    return EmitList(
        engine->engine->AccountsByStatus(static_cast<rapport::v1::AccountStatus>(status)), format,
        out, out_len);
  });
}

int rapport_deals_by_stage(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                           int format) {
  return Guard([&] {
    if (absl::Status st = CheckListArgs(out, out_len, engine, format); !st.ok()) return Fail(st);
    return EmitList(engine->engine->DealsByStage(), format, out, out_len);
  });
}

int rapport_stuck_deals(uint8_t** out, size_t* out_len, const rapport_engine* engine, int64_t at_us,
                        int format) {
  return Guard([&] {
    if (absl::Status st = CheckListArgs(out, out_len, engine, format); !st.ok()) return Fail(st);
    return EmitList(engine->engine->StuckDeals(at_us), format, out, out_len);
  });
}

int rapport_account_status_counts(int64_t* counts, size_t capacity, size_t* written,
                                  const rapport_engine* engine) {
  return Guard([&] {
    if (written != nullptr) *written = 0;
    if (engine == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    if (counts == nullptr && capacity > 0) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "counts is NULL with a capacity");
    }
    if (absl::Status st = engine->engine->Usable(); !st.ok()) return Fail(st);
    const std::vector<int64_t> all = engine->engine->AccountStatusCounts();
    for (size_t i = 0; i < all.size() && i < capacity; ++i) counts[i] = all[i];
    if (written != nullptr) *written = all.size();
    return RAPPORT_OK;
  });
}

int rapport_load_rule_set(uint8_t** out, size_t* out_len, const char* text, size_t text_len,
                          const uint8_t* pipelines, size_t pipelines_len, int format) {
  return Guard([&] {
    ClearOut(out, out_len);
    if (out == nullptr || out_len == nullptr) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "out and out_len must not be NULL");
    }
    if (absl::Status st = CheckInput(reinterpret_cast<const uint8_t*>(text), text_len, "text");
        !st.ok()) {
      return Fail(st);
    }
    if (absl::Status st = CheckInput(pipelines, pipelines_len, "pipelines"); !st.ok()) {
      return Fail(st);
    }
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    rapport::v1::PipelineSet set;
    const rapport::v1::PipelineSet* given = nullptr;
    if (pipelines_len > 0) {
      if (absl::Status st = Parse(pipelines, pipelines_len, format, &set); !st.ok()) {
        return Fail(st);
      }
      given = &set;
    }
    auto r = rapport::Engine::LoadRuleSet(absl::string_view(text == nullptr ? "" : text, text_len),
                                          given);
    if (!r.ok()) return Fail(r.status());
    return Emit(*r, format, out, out_len);
  });
}

}  // extern "C"

// A kept query and report (rapport_kpi_view_*). The report is refilled by
// Engine::KpisInto, which reuses its rows, lines and strings; the protobuf
// bytes go into a kept string too, so a refresh of an unchanged shape
// allocates nothing on either side.
struct rapport_kpi_view {
  const rapport::Engine* engine = nullptr;
  int format = RAPPORT_FORMAT_PROTOBUF;
  rapport::v1::KpiQuery query;
  rapport::v1::KpiReport report;
  // The bytes of the last successful refresh (std::string keeps a NUL after
  // its size, which JSON callers may rely on).
  std::string bytes;
};

namespace {

// Runs the view's query and serializes the report into `view->bytes`. On
// error neither the report nor the bytes change (KpisInto leaves its report
// as it was).
absl::Status RefreshView(rapport_kpi_view* view) {
  if (absl::Status st = view->engine->KpisInto(view->query, &view->report); !st.ok()) return st;
  if (view->format == RAPPORT_FORMAT_JSON) {
    absl::StatusOr<std::string> json = rapport::ToJson(view->report);
    if (!json.ok()) return json.status();
    view->bytes = *std::move(json);
    return absl::OkStatus();
  }
  // The same serialization as Emit() (not deterministic mode: the report has
  // no maps, so the bytes are those of rapport_kpis()).
  if (view->report.ByteSizeLong() > static_cast<size_t>(INT32_MAX)) {
    return absl::ResourceExhaustedError("rapport.v1.KpiReport is over 2 GiB serialized");
  }
  view->bytes.clear();
  if (!view->report.AppendToString(&view->bytes)) {
    return absl::InternalError("the KPI report did not serialize");
  }
  return absl::OkStatus();
}

}  // namespace

extern "C" {

int rapport_kpi_view_create(rapport_kpi_view** out, const rapport_engine* engine,
                            const uint8_t* query, size_t query_len, int format) {
  return Guard([&] {
    if (out == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "out is NULL");
    *out = nullptr;
    if (engine == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    if (absl::Status st = CheckInput(query, query_len, "query"); !st.ok()) return Fail(st);
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    auto view = std::make_unique<rapport_kpi_view>();
    view->engine = engine->engine.get();
    view->format = format;
    if (query_len > 0) {
      if (absl::Status st = Parse(query, query_len, format, &view->query); !st.ok()) {
        return Fail(st);
      }
    }
    // Once now: a bad query fails here, and the report has its shape.
    if (absl::Status st = RefreshView(view.get()); !st.ok()) return Fail(st);
    *out = view.release();
    return RAPPORT_OK;
  });
}

int rapport_kpi_view_refresh(const uint8_t** report, size_t* report_len, rapport_kpi_view* view) {
  return Guard([&] {
    if (report != nullptr) *report = nullptr;
    if (report_len != nullptr) *report_len = 0;
    if (report == nullptr || report_len == nullptr || view == nullptr) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "report, report_len and view must not be NULL");
    }
    if (absl::Status st = RefreshView(view); !st.ok()) return Fail(st);
    *report = reinterpret_cast<const uint8_t*>(view->bytes.data());
    *report_len = view->bytes.size();
    return RAPPORT_OK;
  });
}

void rapport_kpi_view_destroy(rapport_kpi_view* view) { delete view; }

int rapport_default_config(uint8_t** out, size_t* out_len, int format) {
  return Guard([&] {
    ClearOut(out, out_len);
    if (out == nullptr || out_len == nullptr) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "out and out_len must not be NULL");
    }
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    return Emit(rapport::Engine::DefaultConfig(), format, out, out_len);
  });
}

}  // extern "C"
