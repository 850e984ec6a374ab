// The C ABI over the C++ engine. Every entry point catches everything: no
// exception crosses the boundary, and every failure becomes a status code
// plus a thread-local message.
#include "rapport/rapport.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/delimited_message_util.h"
#include "rapport/engine.h"
#include "rapport/json.h"
#include "rapport/v1/snapshot.pb.h"

struct rapport_engine {
  std::unique_ptr<rapport::Engine> engine;
};

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
    return absl::ResourceExhaustedError(absl::StrCat(
        what, " is ", len, " bytes; the limit is ", RAPPORT_MAX_INPUT_BYTES));
  }
  return absl::OkStatus();
}

absl::Status CheckFormat(int format, bool streams_allowed) {
  if (format == RAPPORT_FORMAT_PROTOBUF || format == RAPPORT_FORMAT_JSON) return absl::OkStatus();
  if (streams_allowed && (format == RAPPORT_FORMAT_PROTOBUF_DELIMITED ||
                          format == RAPPORT_FORMAT_JSON_LINES)) {
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

// Serializes `m` in the output family of `format` into a malloc'ed buffer.
int Emit(const google::protobuf::Message& m, int format, uint8_t** out, size_t* out_len) {
  std::string bytes;
  if (IsJson(format)) {
    absl::StatusOr<std::string> json = rapport::ToJson(m);
    if (!json.ok()) return Fail(json.status());
    bytes = *std::move(json);
  } else {
    bytes = m.SerializeAsString();
  }
  // One extra NUL so JSON results can be read as C strings.
  auto* buf = static_cast<uint8_t*>(std::malloc(bytes.size() + 1));
  if (buf == nullptr) return FailWith(RAPPORT_RESOURCE_EXHAUSTED, "out of memory");
  std::memcpy(buf, bytes.data(), bytes.size());
  buf[bytes.size()] = 0;
  *out = buf;
  *out_len = bytes.size();
  return RAPPORT_OK;
}

void ClearOut(uint8_t** out, size_t* out_len) {
  if (out != nullptr) *out = nullptr;
  if (out_len != nullptr) *out_len = 0;
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

absl::Status ParseBatch(const uint8_t* data, size_t len, int format, EventBatch* batch) {
  switch (format) {
    case RAPPORT_FORMAT_PROTOBUF:
    case RAPPORT_FORMAT_JSON:
      return Parse(data, len, format, batch);
    case RAPPORT_FORMAT_JSON_LINES: {
      absl::StatusOr<std::vector<Event>> events = rapport::EventsFromJsonLines(View(data, len));
      if (!events.ok()) return events.status();
      for (Event& e : *events) *batch->add_events() = std::move(e);
      return absl::OkStatus();
    }
    case RAPPORT_FORMAT_PROTOBUF_DELIMITED: {
      google::protobuf::io::ArrayInputStream stream(data, static_cast<int>(len));
      for (int64_t i = 0;; ++i) {
        {
          // Peek for a clean end of the stream between two messages.
          google::protobuf::io::CodedInputStream probe(&stream);
          if (probe.ExpectAtEnd()) break;
        }
        bool clean_eof = false;
        Event* e = batch->add_events();
        if (!google::protobuf::util::ParseDelimitedFromZeroCopyStream(e, &stream, &clean_eof)) {
          if (clean_eof) {
            batch->mutable_events()->RemoveLast();
            break;
          }
          return absl::InvalidArgumentError(
              absl::StrCat("delimited stream: event ", i, " is not a valid rapport.v1.Event"));
        }
        if (static_cast<size_t>(batch->events_size()) > RAPPORT_MAX_BATCH_EVENTS) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "delimited stream: more than ", RAPPORT_MAX_BATCH_EVENTS, " events"));
        }
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
    ClearOut(out, out_len);
    if (out == nullptr || out_len == nullptr || engine == nullptr) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "out, out_len and engine must not be NULL");
    }
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    absl::StatusOr<std::string> bytes = engine->engine->Snapshot();
    if (!bytes.ok()) return Fail(bytes.status());
    if (format == RAPPORT_FORMAT_JSON) {
      rapport::v1::EngineSnapshot snap;
      if (!snap.ParseFromString(*bytes)) return FailWith(RAPPORT_INTERNAL, "snapshot does not parse");
      return Emit(snap, format, out, out_len);
    }
    auto* buf = static_cast<uint8_t*>(std::malloc(bytes->size() + 1));
    if (buf == nullptr) return FailWith(RAPPORT_RESOURCE_EXHAUSTED, "out of memory");
    std::memcpy(buf, bytes->data(), bytes->size());
    *out = buf;
    *out_len = bytes->size();
    return RAPPORT_OK;
  });
}

int rapport_ingest_event(uint8_t** result, size_t* result_len, rapport_engine* engine,
                         const uint8_t* event, size_t event_len, int format) {
  return Guard([&] {
    ClearOut(result, result_len);
    if (engine == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    if ((result == nullptr) != (result_len == nullptr)) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "result and result_len must both be NULL or both set");
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
  return Guard([&] {
    ClearOut(result, result_len);
    if (engine == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    if ((result == nullptr) != (result_len == nullptr)) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "result and result_len must both be NULL or both set");
    }
    if (mode != RAPPORT_BATCH_ATOMIC && mode != RAPPORT_BATCH_BEST_EFFORT) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, absl::StrCat("batch mode ", mode, " is not valid"));
    }
    if (absl::Status st = CheckInput(events, events_len, "events"); !st.ok()) return Fail(st);
    if (absl::Status st = CheckFormat(format, true); !st.ok()) return Fail(st);
    EventBatch batch;
    if (absl::Status st = ParseBatch(events, events_len, format, &batch); !st.ok()) return Fail(st);
    rapport::IngestOptions options;
    options.mode = mode == RAPPORT_BATCH_BEST_EFFORT ? rapport::BatchMode::kBestEffort
                                                     : rapport::BatchMode::kAtomic;
    auto r = engine->engine->IngestBatch(batch, options);
    if (!r.ok()) return Fail(r.status());
    return result == nullptr ? RAPPORT_OK : Emit(*r, format, result, result_len);
  });
}

int rapport_advance(uint8_t** actions, size_t* actions_len, rapport_engine* engine,
                    int64_t now_us, int format) {
  return Guard([&] {
    ClearOut(actions, actions_len);
    if (engine == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    if ((actions == nullptr) != (actions_len == nullptr)) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "actions and actions_len must both be NULL or both set");
    }
    if (absl::Status st = CheckFormat(format, false); !st.ok()) return Fail(st);
    auto r = engine->engine->Advance(now_us);
    if (!r.ok()) return Fail(r.status());
    return actions == nullptr ? RAPPORT_OK : Emit(*r, format, actions, actions_len);
  });
}

}  // extern "C"

namespace {

template <typename Getter>
int GetById(uint8_t** out, size_t* out_len, const rapport_engine* engine, const char* id,
            size_t id_len, int format, Getter get) {
  return Guard([&] {
    ClearOut(out, out_len);
    if (out == nullptr || out_len == nullptr || engine == nullptr) {
      return FailWith(RAPPORT_INVALID_ARGUMENT, "out, out_len and engine must not be NULL");
    }
    if (id == nullptr) return FailWith(RAPPORT_INVALID_ARGUMENT, "id is NULL");
    if (id_len > rapport::kMaxIdBytes) {
      return FailWith(RAPPORT_INVALID_ARGUMENT,
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

}  // extern "C"
