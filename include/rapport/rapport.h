/*
 * Rapport's stable C ABI.
 *
 * Conventions (they hold for every function below):
 *  - Every function that can fail returns an `int` status: RAPPORT_OK (0) or
 *    one of the RAPPORT_* codes, numbered as absl::StatusCode. On failure
 *    rapport_last_error_message() says what was wrong, and nothing changed.
 *  - Out parameters come first. A buffer the library returns through
 *    `uint8_t** out, size_t* out_len` is owned by the caller and must be
 *    released with rapport_free(), never free(). On failure *out is NULL and
 *    *out_len is 0.
 *  - Rich values cross as bytes: protobuf (rapport.v1 messages, see
 *    proto/rapport/v1/) or protobuf's canonical JSON, chosen by a `format`
 *    argument. Results come back in the same family as the input: protobuf
 *    for RAPPORT_FORMAT_PROTOBUF and RAPPORT_FORMAT_PROTOBUF_DELIMITED, JSON
 *    for RAPPORT_FORMAT_JSON and RAPPORT_FORMAT_JSON_LINES (unless a function
 *    takes a separate `result_format`). JSON results carry one extra NUL byte
 *    after `out_len` bytes, so they can be read as C strings. JSON output
 *    uses the .proto field names (snake_case) and writes 64-bit integers as
 *    strings, as protobuf's JSON mapping does; JSON input takes either name
 *    style and 64-bit integers as numbers or strings.
 *  - Input is borrowed for the duration of the call only.
 *  - Thread-safety: an engine handle may be used from several threads at
 *    once; writes are serialized, reads run concurrently (each declaration
 *    says which it is). The error message is per thread. Creating and
 *    destroying a handle is the caller's to order: no call may be running on
 *    an engine being destroyed.
 *  - No C++ exception crosses the boundary: every entry point turns one into
 *    RAPPORT_INTERNAL (RAPPORT_RESOURCE_EXHAUSTED for out of memory).
 *  - Limits: an input buffer of at most RAPPORT_MAX_INPUT_BYTES; a batch of at
 *    most RAPPORT_MAX_BATCH_EVENTS events; ids of at most 128 bytes.
 *
 * Versioning: a shipped signature never changes; new behaviour gets a new
 * function (`_v2`). Status codes and enum values are only ever appended.
 */
#ifndef RAPPORT_RAPPORT_H_
#define RAPPORT_RAPPORT_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RAPPORT_BUILDING_LIBRARY)
#define RAPPORT_C_API __attribute__((visibility("default")))
#else
#define RAPPORT_C_API
#endif

/* X * 1000000 + Y * 1000 + Z for version X.Y.Z. */
#define RAPPORT_VERSION_NUMBER 1000
#define RAPPORT_VERSION_STRING "0.1.0"

#define RAPPORT_MAX_INPUT_BYTES ((size_t)256 << 20)
#define RAPPORT_MAX_BATCH_EVENTS ((size_t)1 << 20)

/* Status codes: the numbering of absl::StatusCode. Only ever appended. */
#define RAPPORT_OK 0
#define RAPPORT_CANCELLED 1
#define RAPPORT_UNKNOWN 2
#define RAPPORT_INVALID_ARGUMENT 3
#define RAPPORT_DEADLINE_EXCEEDED 4
#define RAPPORT_NOT_FOUND 5
/* Also: an event id seen before with other content (a conflict). */
#define RAPPORT_ALREADY_EXISTS 6
#define RAPPORT_PERMISSION_DENIED 7
#define RAPPORT_RESOURCE_EXHAUSTED 8
#define RAPPORT_FAILED_PRECONDITION 9
#define RAPPORT_ABORTED 10
#define RAPPORT_OUT_OF_RANGE 11
#define RAPPORT_UNIMPLEMENTED 12
#define RAPPORT_INTERNAL 13
#define RAPPORT_UNAVAILABLE 14
#define RAPPORT_DATA_LOSS 15
#define RAPPORT_UNAUTHENTICATED 16

/* Formats of rich values. */
#define RAPPORT_FORMAT_PROTOBUF 0
#define RAPPORT_FORMAT_JSON 1
/* A stream of varint-length-prefixed rapport.v1.Event messages. */
#define RAPPORT_FORMAT_PROTOBUF_DELIMITED 2
/* One JSON rapport.v1.Event per line; blank lines are skipped. */
#define RAPPORT_FORMAT_JSON_LINES 3

/* Batch modes. */
/* All or nothing; the error names the index of the first bad event. */
#define RAPPORT_BATCH_ATOMIC 0
/* Apply the good events; the result lists every rejected index and reason. */
#define RAPPORT_BATCH_BEST_EFFORT 1

/* An engine: opaque. */
typedef struct rapport_engine rapport_engine;

/* The library's version, RAPPORT_VERSION_NUMBER of the build. Thread-safe. */
RAPPORT_C_API int32_t rapport_version_number(void);

/* The message of the last failed call on this thread ("" if none).
 * Borrowed: valid until the next rapport_* call on the same thread. */
RAPPORT_C_API const char* rapport_last_error_message(void);

/* Releases a buffer the library returned. NULL is a no-op. */
RAPPORT_C_API void rapport_free(void* buffer);

/* Creates an engine. `config` is a rapport.v1.EngineConfig in `format`
 * (PROTOBUF or JSON); NULL with length 0 takes every default.
 * *out is owned by the caller: release it with rapport_engine_destroy(). */
RAPPORT_C_API int rapport_engine_create(rapport_engine** out, const uint8_t* config,
                                        size_t config_len, int format);

/* Destroys an engine; NULL is a no-op. No other thread may be using it. A
 * persistent engine (rapport_engine_open) releases its directory's lock. */
RAPPORT_C_API void rapport_engine_destroy(rapport_engine* engine);

/* Rebuilds an engine from a snapshot (rapport.v1.EngineSnapshot in `format`,
 * PROTOBUF or JSON), exactly. *out as for rapport_engine_create(). From
 * 4 MiB of protobuf bytes on two or more cores the work is shared with one
 * thread of the library's own, joined before the call returns. */
RAPPORT_C_API int rapport_engine_restore(rapport_engine** out, const uint8_t* snapshot,
                                         size_t snapshot_len, int format);

/* The engine's whole state as a rapport.v1.EngineSnapshot in `format`
 * (PROTOBUF: deterministic bytes; or JSON). A large state is written on the
 * caller's thread and one of the library's own, as rapport_engine_restore. */
RAPPORT_C_API int rapport_engine_snapshot(uint8_t** out, size_t* out_len,
                                          const rapport_engine* engine, int format);

/* Ingests one rapport.v1.Event (`format`: PROTOBUF or JSON). `result`
 * (may be NULL, with `result_len`) receives a rapport.v1.IngestResult. */
RAPPORT_C_API int rapport_ingest_event(uint8_t** result, size_t* result_len, rapport_engine* engine,
                                       const uint8_t* event, size_t event_len, int format);

/* Ingests several events in order. `format`: PROTOBUF (a rapport.v1.EventBatch),
 * PROTOBUF_DELIMITED, JSON (a rapport.v1.EventBatch) or JSON_LINES. `mode`:
 * RAPPORT_BATCH_ATOMIC or RAPPORT_BATCH_BEST_EFFORT. `result` (may be NULL)
 * receives a rapport.v1.IngestResult. Input that does not parse fails the
 * whole call in either mode, naming the event (or line) that did not parse. */
RAPPORT_C_API int rapport_ingest_batch(uint8_t** result, size_t* result_len, rapport_engine* engine,
                                       const uint8_t* events, size_t events_len, int format,
                                       int mode);

/* Moves the engine's clock to `now_us` (microseconds since the epoch).
 * `actions` (may be NULL) receives the rapport.v1.ActionList produced, in
 * `format` (PROTOBUF or JSON). */
RAPPORT_C_API int rapport_advance(uint8_t** actions, size_t* actions_len, rapport_engine* engine,
                                  int64_t now_us, int format);

/* Reads one account (rapport.v1.Account) or deal with its stage history
 * (rapport.v1.Deal) by id (`id_len` bytes, not necessarily NUL-terminated),
 * in `format` (PROTOBUF or JSON). RAPPORT_NOT_FOUND for an unknown id. */
RAPPORT_C_API int rapport_get_account(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                                      const char* id, size_t id_len, int format);
RAPPORT_C_API int rapport_get_deal(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                                   const char* id, size_t id_len, int format);

/* Events accepted so far. Never fails; 0 for NULL. */
RAPPORT_C_API int64_t rapport_events_accepted(const rapport_engine* engine);

/* ---- Appended in ABI RAPPORT_1 (0.1.0): more reads, KPIs, persistence. ---- */

/* Reads one order (rapport.v1.Order), manager (rapport.v1.Manager) or team
 * (rapport.v1.Team) by id, as rapport_get_account(). Thread-safety: readers;
 * they run concurrently with each other. */
RAPPORT_C_API int rapport_get_order(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                                    const char* id, size_t id_len, int format);
RAPPORT_C_API int rapport_get_manager(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                                      const char* id, size_t id_len, int format);
RAPPORT_C_API int rapport_get_team(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                                   const char* id, size_t id_len, int format);

/* The configuration in effect, defaults filled in (rapport.v1.EngineConfig
 * in `format`, PROTOBUF or JSON). *out is the caller's: rapport_free(). */
RAPPORT_C_API int rapport_engine_config(uint8_t** out, size_t* out_len,
                                        const rapport_engine* engine, int format);

/* The engine's clock: the latest rapport_advance() time (0 before any).
 * Never fails; 0 for NULL. */
RAPPORT_C_API int64_t rapport_clock_us(const rapport_engine* engine);

/* KPIs of SPEC section 5. `query` is a rapport.v1.KpiQuery in `format`
 * (PROTOBUF or JSON); *out receives the rapport.v1.KpiReport in the same
 * format (the caller's: rapport_free()). Thread-safety: a reader; runs
 * concurrently with other readers.
 * Errors: RAPPORT_INVALID_ARGUMENT for a bad period, as_of, enum, time zone
 * or too many buckets; RAPPORT_OUT_OF_RANGE when a money sum overflows. */
RAPPORT_C_API int rapport_kpis(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                               const uint8_t* query, size_t query_len, int format);

/* The same query's partial result over the accounts this engine holds
 * (rapport.v1.KpiPartial), to merge with rapport_kpi_merge(). Same errors. */
RAPPORT_C_API int rapport_kpi_partial(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                                      const uint8_t* query, size_t query_len, int format);

/* Merges `count` partials (partials[i] of partial_lens[i] bytes, each a
 * rapport.v1.KpiPartial in `format`) of engines holding disjoint sets of
 * accounts into the rapport.v1.KpiReport one engine holding all of them would
 * give. Borrows the inputs; touches no engine, so it is thread-safe.
 * Errors: RAPPORT_INVALID_ARGUMENT for count 0, a NULL array, partials of
 * different queries or an account in two partials; RAPPORT_OUT_OF_RANGE for a
 * money sum overflow. */
RAPPORT_C_API int rapport_kpi_merge(uint8_t** out, size_t* out_len, const uint8_t* const* partials,
                                    const size_t* partial_lens, size_t count, int format);

/* How a persistent engine makes a write durable before the write returns
 * (rapport_engine_open). Only appended. */
/* fdatasync before every write returns: survives power loss. The fdatasync
 * runs while the write is applied; the write returns, and readers see it,
 * once both are done. If it fails, the write fails with its code, and as the
 * write may already be applied in memory, every later call on the engine
 * fails with RAPPORT_FAILED_PRECONDITION (naming the fdatasync failure and
 * saying to reopen) until the engine is destroyed and opened again, reads
 * included, except rapport_events_accepted and rapport_clock_us (which have
 * no status to fail with and answer 0). Reopening gives every acknowledged
 * write and not the failed one. */
#define RAPPORT_SYNC_PER_BATCH 0
/* Writers on several threads share one fdatasync; readers may see a write
 * before it is durable. If the fdatasync fails, the writes waiting on it
 * fail but stay applied in memory, and the engine refuses writes (reads go
 * on) until reopened. */
#define RAPPORT_SYNC_GROUP_COMMIT 1
/* No fdatasync: survives a process crash, not a machine crash. */
#define RAPPORT_SYNC_OFF 2

/* Flags of rapport_engine_open, OR-ed. Only appended. */
/* Damage in the middle of the journal: stop at the last good record (the
 * writes after it are lost) instead of failing with RAPPORT_DATA_LOSS. */
#define RAPPORT_OPEN_POINT_IN_TIME_RECOVERY 1

/* Opens the persistent engine in directory `dir` (a NUL-terminated path,
 * created if missing; its parent must exist), or creates one there with
 * `config` (rapport.v1.EngineConfig in `format`, PROTOBUF or JSON; NULL with
 * length 0 for the defaults; ignored when the directory holds an engine).
 * Every write is journaled before it returns (see `sync_mode`). The
 * directory stays locked until rapport_engine_destroy(). *out as for
 * rapport_engine_create().
 * Errors: RAPPORT_FAILED_PRECONDITION if another engine has the directory
 * open; RAPPORT_DATA_LOSS for a damaged journal or snapshot; the file
 * system's errors (RAPPORT_RESOURCE_EXHAUSTED, RAPPORT_UNAVAILABLE,
 * RAPPORT_PERMISSION_DENIED) naming the path. */
RAPPORT_C_API int rapport_engine_open(rapport_engine** out, const char* dir, const uint8_t* config,
                                      size_t config_len, int format, int sync_mode, int flags);

/* Persistent engines only: writes a snapshot and drops the journal it makes
 * redundant. Thread-safety: a writer.
 * Errors: RAPPORT_FAILED_PRECONDITION for an engine that is not persistent;
 * the file system's errors naming the path (the engine stays usable). */
RAPPORT_C_API int rapport_engine_checkpoint(rapport_engine* engine);

/* ---- Appended in ABI RAPPORT_1 (0.1.0): regulations and grading. ---- */

/* The outbox: actions the regulations produced that the host has not
 * acknowledged yet (and tasks not yet completed), in the order they were
 * produced, as a rapport.v1.ActionList in `format` (PROTOBUF or JSON).
 * *out is the caller's: rapport_free(). Thread-safety: a reader. */
RAPPORT_C_API int rapport_outbox(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                                 int format);

/* Acknowledges `count` actions by id (ids[i] of id_lens[i] bytes, not
 * necessarily NUL-terminated): they leave the outbox; a task stays open
 * until a task-completed event. Acknowledging again is a no-op. The arrays are
 * borrowed for the call. Thread-safety: a writer.
 * Errors: RAPPORT_NOT_FOUND naming the first unknown id,
 * RAPPORT_INVALID_ARGUMENT naming a repeated one; then nothing changes. */
RAPPORT_C_API int rapport_acknowledge(rapport_engine* engine, const char* const* ids,
                                      const size_t* id_lens, size_t count);

/* Grades of every manager at `as_of_us` under the configured grade policy
 * (SPEC section 6), as a rapport.v1.GradeEvaluation in `format` (PROTOBUF or
 * JSON). *out is the caller's: rapport_free(). Thread-safety: a reader.
 * Errors: RAPPORT_INVALID_ARGUMENT for as_of_us outside years 1970..9999;
 * RAPPORT_OUT_OF_RANGE when a money sum overflows. */
RAPPORT_C_API int rapport_grades(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                                 int64_t as_of_us, int format);

/* Parses and validates a rule set: `text` is a rapport.v1.RuleSet in protobuf
 * text format, or canonical JSON when it starts (after white space) with '{'.
 * `pipelines` (a rapport.v1.PipelineSet in `format`; NULL with length 0 for
 * the default pipelines) is what the rules are checked against. *out
 * receives the rapport.v1.RuleSet in `format` (PROTOBUF or JSON), ready for
 * EngineConfig.rule_set. Touches no engine: thread-safe.
 * Errors: RAPPORT_INVALID_ARGUMENT with the parser's position, or naming the
 * rule id and the field that is wrong. */
RAPPORT_C_API int rapport_load_rule_set(uint8_t** out, size_t* out_len, const char* text,
                                        size_t text_len, const uint8_t* pipelines,
                                        size_t pipelines_len, int format);

/* rapport_ingest_batch() with the result's format chosen apart from the
 * input's: `result_format` is RAPPORT_FORMAT_PROTOBUF or RAPPORT_FORMAT_JSON.
 * A host that streams protobuf events but cannot decode protobuf (a script
 * with no protobuf runtime) asks for a JSON result. Otherwise the same. */
RAPPORT_C_API int rapport_ingest_batch_v2(uint8_t** result, size_t* result_len,
                                          rapport_engine* engine, const uint8_t* events,
                                          size_t events_len, int format, int mode,
                                          int result_format);

/* ---- Appended in ABI RAPPORT_1 (0.1.0): lists of the lifecycle. ----
 * Lists come back as streams in `format`: RAPPORT_FORMAT_PROTOBUF_DELIMITED
 * (varint-length-prefixed messages) or RAPPORT_FORMAT_JSON_LINES (one JSON
 * object per line); an empty list is an empty buffer (*out is still set and
 * must be freed). *out is the caller's: rapport_free(). Thread-safety:
 * readers. */

/* Accounts with `status` (a rapport.v1.AccountStatus number), in order of
 * creation, as rapport.v1.Account messages.
 * Errors: RAPPORT_INVALID_ARGUMENT for a status that is not in the enum. */
RAPPORT_C_API int rapport_accounts_by_status(uint8_t** out, size_t* out_len,
                                             const rapport_engine* engine, int status, int format);

/* Open and won deals per stage of every pipeline (rapport.v1.StageCount), in
 * pipeline and stage order, stages with no deals included. */
RAPPORT_C_API int rapport_deals_by_stage(uint8_t** out, size_t* out_len,
                                         const rapport_engine* engine, int format);

/* Deals past their stage's SLA at `at_us` (rapport.v1.StuckDeal), in order of
 * creation. */
RAPPORT_C_API int rapport_stuck_deals(uint8_t** out, size_t* out_len, const rapport_engine* engine,
                                      int64_t at_us, int format);

/* Accounts per status: counts[s] for each rapport.v1.AccountStatus number s
 * below `capacity`; *written (may be NULL) receives how many entries the
 * engine has (the enum's size), which may exceed `capacity`. */
RAPPORT_C_API int rapport_account_status_counts(int64_t* counts, size_t capacity, size_t* written,
                                                const rapport_engine* engine);

/* ---- Appended in ABI RAPPORT_1 (0.1.0): the persistent engine's policy. ---- */

/* rapport_engine_open with the journal's policy too:
 * `snapshot_every_bytes`: a write that brings the journal since the last
 * snapshot past this many bytes takes a snapshot before returning (bounding
 * disk use and the time an open spends replaying); 0 = only explicit
 * rapport_engine_checkpoint() calls; -1 = the default, 256 MiB.
 * `segment_bytes`: the journal continues in a new file after this many
 * bytes; -1 = the default, 64 MiB.
 * Everything else, ownership and errors as rapport_engine_open(), plus
 * RAPPORT_INVALID_ARGUMENT naming a policy value below -1 or a
 * segment_bytes of 0. */
RAPPORT_C_API int rapport_engine_open_v2(rapport_engine** out, const char* dir,
                                         const uint8_t* config, size_t config_len, int format,
                                         int sync_mode, int flags, int64_t snapshot_every_bytes,
                                         int64_t segment_bytes);

/* ---- Appended in ABI RAPPORT_1 (0.1.0): kept KPI reports, defaults. ---- */

/* A KPI view: one query (rapport.v1.KpiQuery) on one engine, with the
 * report it last produced kept between refreshes. A dashboard that refreshes
 * the same query again and again reuses the report's rows, lines and strings
 * (Engine::KpisInto) instead of building a new report as rapport_kpis()
 * does, which is most of the cost of a query the engine's KPI cells answer
 * (bench/c_api_bench BM_CApiKpiDashboard: 0.56 ms instead of 1.5 ms at
 * 500 000 events; the gap grows with the report). Opaque.
 *
 * Ownership: the view is the caller's (rapport_kpi_view_destroy()). It
 * borrows its engine, which must outlive it: destroy every view of an engine
 * before the engine. The bytes a refresh returns are the view's: valid until
 * the next refresh of that view or its destruction, never to be freed.
 * Thread-safety: a refresh is a reader of the engine (it runs alongside
 * other readers, and sees the state between two writes); a view itself is
 * used by one thread at a time (several views of one engine may refresh
 * concurrently). */
typedef struct rapport_kpi_view rapport_kpi_view;

/* Creates a view of `query` (a rapport.v1.KpiQuery in `format`, PROTOBUF or
 * JSON; NULL with length 0 is the empty query) on `engine`. Refreshes return
 * the rapport.v1.KpiReport in the same format. The query is run once here,
 * so a query the engine refuses fails now, not at the first refresh.
 * *out is the caller's: rapport_kpi_view_destroy().
 * Errors: those of rapport_kpis(); RAPPORT_INVALID_ARGUMENT for a NULL out or
 * engine. */
RAPPORT_C_API int rapport_kpi_view_create(rapport_kpi_view** out, const rapport_engine* engine,
                                          const uint8_t* query, size_t query_len, int format);

/* Runs the view's query on the engine's current state: *report receives the
 * rapport.v1.KpiReport (the same bytes rapport_kpis() would return for the
 * query, a JSON report with its extra NUL), owned by the view (see above).
 * Errors: RAPPORT_OUT_OF_RANGE when a money sum overflows; RAPPORT_INVALID_
 * ARGUMENT for a NULL argument. On failure *report is NULL and *report_len
 * 0, and the bytes of the previous refresh stay valid. */
RAPPORT_C_API int rapport_kpi_view_refresh(const uint8_t** report, size_t* report_len,
                                           rapport_kpi_view* view);

/* Destroys a view and the bytes it holds; NULL is a no-op. */
RAPPORT_C_API void rapport_kpi_view_destroy(rapport_kpi_view* view);

/* The compiled-in default configuration (the partner and client pipelines
 * of SPEC section 3, the default playbook, the grade policy), as a
 * rapport.v1.EngineConfig in `format` (PROTOBUF or JSON): what an engine
 * created with no config uses. *out is the caller's: rapport_free().
 * Touches no engine: thread-safe. */
RAPPORT_C_API int rapport_default_config(uint8_t** out, size_t* out_len, int format);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* RAPPORT_RAPPORT_H_ */
