/*
 * The C ABI, exercised from C (compiled as C11, -pedantic) against the shared
 * library only: every function, its error paths, and memory ownership (every
 * buffer the library returns is released with rapport_free(); the asan preset
 * runs this with leak detection, so a leak on either side fails the test).
 *
 * Protobuf inputs are encoded by hand below (a few fields of rapport.v1.Event
 * and EventBatch), which also pins the wire format the ABI promises.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rapport/rapport.h"

static int g_checks = 0;

#define CHECK(cond)                                                                             \
  do {                                                                                          \
    ++g_checks;                                                                                 \
    if (!(cond)) {                                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n  last error: %s\n", __FILE__, __LINE__, #cond, \
              rapport_last_error_message());                                                    \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

/* The call fails with `code` and the message contains `needle`. */
#define CHECK_FAILS(call, code, needle)                                                        \
  do {                                                                                         \
    int rc_ = (call);                                                                          \
    ++g_checks;                                                                                \
    if (rc_ != (code) || strstr(rapport_last_error_message(), (needle)) == NULL) {             \
      fprintf(stderr, "%s:%d: %s\n  returned %d (want %d), message \"%s\" (want \"%s\")\n",    \
              __FILE__, __LINE__, #call, rc_, (code), rapport_last_error_message(), (needle)); \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

#define CHECK_OK(call) CHECK_FAILS(call, RAPPORT_OK, "")

static const uint8_t* U(const char* s) { return (const uint8_t*)s; }

/* ---- A tiny protobuf encoder: enough for a few events. ---- */

typedef struct {
  uint8_t data[4096];
  size_t len;
} Buf;

static void put_varint(Buf* b, uint64_t v) {
  while (v >= 0x80) {
    b->data[b->len++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  b->data[b->len++] = (uint8_t)v;
}
static void put_bytes_field(Buf* b, uint32_t field, const uint8_t* p, size_t n) {
  put_varint(b, ((uint64_t)field << 3) | 2);
  put_varint(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}
static void put_string_field(Buf* b, uint32_t field, const char* s) {
  put_bytes_field(b, field, U(s), strlen(s));
}
static void put_varint_field(Buf* b, uint32_t field, uint64_t v) {
  put_varint(b, (uint64_t)field << 3);
  put_varint(b, v);
}

/* rapport.v1.Event{event_id, occurred_at_us, partner_agreed{account_id}}:
 * fields 1, 2 and 17 (PartnerAgreed.account_id is field 1). */
static void encode_partner_agreed(Buf* out, const char* event_id, int64_t at_us,
                                  const char* account_id) {
  Buf payload = {{0}, 0};
  put_string_field(&payload, 1, account_id);
  out->len = 0;
  put_string_field(out, 1, event_id);
  put_varint_field(out, 2, (uint64_t)at_us);
  put_bytes_field(out, 17, payload.data, payload.len);
}

/* ---- Helpers over the ABI. ---- */

static rapport_engine* new_engine(void) {
  rapport_engine* e = NULL;
  CHECK_OK(rapport_engine_create(&e, NULL, 0, RAPPORT_FORMAT_JSON));
  CHECK(e != NULL);
  return e;
}

static void ingest_json(rapport_engine* e, const char* json) {
  CHECK_OK(rapport_ingest_event(NULL, NULL, e, U(json), strlen(json), RAPPORT_FORMAT_JSON));
}

/* A small company: a team, its lead, a partner prospect, a client with a
 * deal and an order. */
static void seed(rapport_engine* e) {
  ingest_json(e,
              "{\"eventId\":\"t\",\"occurredAtUs\":\"1735689600000000\","
              "\"teamUpserted\":{\"teamId\":\"team-1\",\"name\":\"North\"}}");
  ingest_json(e,
              "{\"eventId\":\"m\",\"occurredAtUs\":\"1735689600000000\","
              "\"managerUpserted\":{\"managerId\":\"m-1\",\"teamId\":\"team-1\"}}");
  ingest_json(e,
              "{\"eventId\":\"p\",\"occurredAtUs\":\"1735689600000000\","
              "\"accountUpserted\":{\"accountId\":\"p-1\",\"kind\":\"ACCOUNT_KIND_PARTNER\","
              "\"ownerId\":\"m-1\",\"preferredChannel\":\"CHANNEL_EMAIL\"}}");
  ingest_json(e,
              "{\"eventId\":\"c\",\"occurredAtUs\":\"1735689600000000\","
              "\"accountUpserted\":{\"accountId\":\"c-1\",\"kind\":\"ACCOUNT_KIND_CLIENT\","
              "\"ownerId\":\"m-1\",\"referredBy\":\"p-1\"}}");
  ingest_json(e,
              "{\"eventId\":\"l\",\"occurredAtUs\":\"1735776000000000\","
              "\"leadCreated\":{\"dealId\":\"d-1\",\"accountId\":\"c-1\"}}");
  ingest_json(e,
              "{\"eventId\":\"o\",\"occurredAtUs\":\"1735862400000000\","
              "\"orderPlaced\":{\"orderId\":\"o-1\",\"accountId\":\"c-1\",\"dealId\":\"d-1\","
              "\"amount\":{\"amountMinor\":\"150000\",\"currency\":\"RUB\"}}}");
  ingest_json(e,
              "{\"eventId\":\"pay\",\"occurredAtUs\":\"1735948800000000\","
              "\"paymentReceived\":{\"accountId\":\"c-1\",\"orderId\":\"o-1\","
              "\"amount\":{\"amountMinor\":\"150000\",\"currency\":\"RUB\"}}}");
}

static void test_basics(void) {
  CHECK(rapport_version_number() == RAPPORT_VERSION_NUMBER);
  CHECK(rapport_version_number() >= 1000);
  rapport_free(NULL); /* a no-op */
  rapport_engine_destroy(NULL);
  CHECK(rapport_events_accepted(NULL) == 0);
  CHECK(rapport_clock_us(NULL) == 0);
  /* A failure sets the message; the next successful call clears it. */
  CHECK_FAILS(rapport_engine_create(NULL, NULL, 0, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT,
              "out is NULL");
  CHECK(strlen(rapport_last_error_message()) > 0);
  {
    rapport_engine* e = new_engine();
    CHECK(strcmp(rapport_last_error_message(), "") == 0);
    rapport_engine_destroy(e);
  }
}

static void test_create(void) {
  rapport_engine* e = (rapport_engine*)&g_checks; /* must be reset to NULL */
  uint8_t junk[4] = {0xff, 0xff, 0xff, 0xff};
  CHECK_FAILS(rapport_engine_create(&e, NULL, 5, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT,
              "config is NULL");
  CHECK(e == NULL);
  CHECK_FAILS(rapport_engine_create(&e, U("{}"), 2, RAPPORT_FORMAT_JSON_LINES),
              RAPPORT_INVALID_ARGUMENT, "format 3");
  CHECK_FAILS(rapport_engine_create(&e, U("{}"), 2, 42), RAPPORT_INVALID_ARGUMENT, "format 42");
  CHECK_FAILS(rapport_engine_create(&e, U("{nope"), 5, RAPPORT_FORMAT_JSON),
              RAPPORT_INVALID_ARGUMENT, "");
  CHECK_FAILS(rapport_engine_create(&e, U("{\"noSuchField\":1}"), 16, RAPPORT_FORMAT_JSON),
              RAPPORT_INVALID_ARGUMENT, "noSuchField");
  CHECK_FAILS(rapport_engine_create(&e, junk, sizeof junk, RAPPORT_FORMAT_PROTOBUF),
              RAPPORT_INVALID_ARGUMENT, "rapport.v1.EngineConfig");
  /* Oversize input is refused on its length, before a byte is read. */
  CHECK_FAILS(rapport_engine_create(&e, junk, RAPPORT_MAX_INPUT_BYTES + 1, RAPPORT_FORMAT_JSON),
              RAPPORT_RESOURCE_EXHAUSTED, "limit");
  CHECK(e == NULL);
  /* An explicit (empty) config in both formats. */
  CHECK_OK(rapport_engine_create(&e, U("{}"), 2, RAPPORT_FORMAT_JSON));
  rapport_engine_destroy(e);
  CHECK_OK(rapport_engine_create(&e, NULL, 0, RAPPORT_FORMAT_PROTOBUF));
  rapport_engine_destroy(e);
}

static void test_ingest_event(void) {
  rapport_engine* e = new_engine();
  uint8_t* out = NULL;
  size_t len = 0;
  Buf pb = {{0}, 0};
  seed(e);
  CHECK(rapport_events_accepted(e) == 7);

  /* Protobuf in, protobuf out; then the same again is a duplicate. */
  encode_partner_agreed(&pb, "agree-1", 1736035200000000, "p-1");
  CHECK_OK(rapport_ingest_event(&out, &len, e, pb.data, pb.len, RAPPORT_FORMAT_PROTOBUF));
  CHECK(out != NULL && len > 0);
  CHECK(out[0] == 0x08 && out[1] == 1); /* IngestResult.accepted = 1 */
  rapport_free(out);
  CHECK_OK(rapport_ingest_event(&out, &len, e, pb.data, pb.len, RAPPORT_FORMAT_PROTOBUF));
  CHECK(out[0] == 0x10 && out[1] == 1); /* IngestResult.duplicates = 1 */
  rapport_free(out);
  CHECK(rapport_events_accepted(e) == 8);

  /* JSON in, JSON out (NUL-terminated for convenience). */
  CHECK_OK(rapport_ingest_event(
      &out, &len, e,
      U("{\"eventId\":\"act\",\"occurredAtUs\":\"1736035200000000\",\"activity\":{"
        "\"accountId\":\"c-1\",\"managerId\":\"m-1\",\"kind\":\"ACTIVITY_KIND_CALL\","
        "\"direction\":\"DIRECTION_OUTBOUND\"}}"),
      strlen("{\"eventId\":\"act\",\"occurredAtUs\":\"1736035200000000\",\"activity\":{"
             "\"accountId\":\"c-1\",\"managerId\":\"m-1\",\"kind\":\"ACTIVITY_KIND_CALL\","
             "\"direction\":\"DIRECTION_OUTBOUND\"}}"),
      RAPPORT_FORMAT_JSON));
  CHECK(strlen((const char*)out) == len);
  CHECK(strstr((const char*)out, "\"accepted\"") != NULL);
  rapport_free(out);

  /* Errors change nothing and say what was wrong. */
  {
    const char* unknown =
        "{\"eventId\":\"x1\",\"occurredAtUs\":\"1736035200000000\","
        "\"partnerAgreed\":{\"accountId\":\"p-404\"}}";
    const char* conflict =
        "{\"eventId\":\"agree-1\",\"occurredAtUs\":\"1736035200000001\","
        "\"partnerAgreed\":{\"accountId\":\"p-1\"}}";
    const char* bad_score =
        "{\"eventId\":\"fb\",\"occurredAtUs\":\"1736035200000000\","
        "\"feedbackReceived\":{\"accountId\":\"c-1\",\"score\":11}}";
    int64_t before = rapport_events_accepted(e);
    out = (uint8_t*)&g_checks;
    len = 99;
    CHECK_FAILS(
        rapport_ingest_event(&out, &len, e, U(unknown), strlen(unknown), RAPPORT_FORMAT_JSON),
        RAPPORT_NOT_FOUND, "p-404");
    CHECK(out == NULL && len == 0);
    CHECK_FAILS(
        rapport_ingest_event(NULL, NULL, e, U(conflict), strlen(conflict), RAPPORT_FORMAT_JSON),
        RAPPORT_ALREADY_EXISTS, "agree-1");
    CHECK_FAILS(
        rapport_ingest_event(NULL, NULL, e, U(bad_score), strlen(bad_score), RAPPORT_FORMAT_JSON),
        RAPPORT_INVALID_ARGUMENT, "score");
    /* Wrong format: JSON text claimed as protobuf, protobuf claimed as JSON. */
    CHECK_FAILS(
        rapport_ingest_event(NULL, NULL, e, U(unknown), strlen(unknown), RAPPORT_FORMAT_PROTOBUF),
        RAPPORT_INVALID_ARGUMENT, "rapport.v1.Event");
    CHECK_FAILS(rapport_ingest_event(NULL, NULL, e, pb.data, pb.len, RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "");
    CHECK_FAILS(
        rapport_ingest_event(NULL, NULL, e, pb.data, pb.len, RAPPORT_FORMAT_PROTOBUF_DELIMITED),
        RAPPORT_INVALID_ARGUMENT, "format 2");
    CHECK_FAILS(rapport_ingest_event(NULL, NULL, NULL, pb.data, pb.len, RAPPORT_FORMAT_PROTOBUF),
                RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    CHECK_FAILS(rapport_ingest_event(NULL, NULL, e, NULL, 3, RAPPORT_FORMAT_PROTOBUF),
                RAPPORT_INVALID_ARGUMENT, "event is NULL");
    CHECK_FAILS(rapport_ingest_event(&out, NULL, e, pb.data, pb.len, RAPPORT_FORMAT_PROTOBUF),
                RAPPORT_INVALID_ARGUMENT, "both");
    CHECK_FAILS(rapport_ingest_event(NULL, NULL, e, pb.data, RAPPORT_MAX_INPUT_BYTES + 1,
                                     RAPPORT_FORMAT_PROTOBUF),
                RAPPORT_RESOURCE_EXHAUSTED, "limit");
    CHECK(rapport_events_accepted(e) == before);
  }
  rapport_engine_destroy(e);
}

static void test_ingest_batch(void) {
  rapport_engine* e = new_engine();
  uint8_t* out = NULL;
  size_t len = 0;
  seed(e);

  /* JSON lines, atomic: one bad event (index 1) fails all three. */
  {
    const char* lines =
        "{\"eventId\":\"b1\",\"occurredAtUs\":\"1736035200000000\",\"partnerAgreed\":{"
        "\"accountId\":\"p-1\"}}\n"
        "\n"
        "{\"eventId\":\"b2\",\"occurredAtUs\":\"1736035200000000\",\"partnerAgreed\":{"
        "\"accountId\":\"nobody\"}}\n"
        "{\"eventId\":\"b3\",\"occurredAtUs\":\"1736035200000000\",\"partnerChurned\":{"
        "\"accountId\":\"p-1\"}}\n";
    int64_t before = rapport_events_accepted(e);
    CHECK_FAILS(rapport_ingest_batch(&out, &len, e, U(lines), strlen(lines),
                                     RAPPORT_FORMAT_JSON_LINES, RAPPORT_BATCH_ATOMIC),
                RAPPORT_NOT_FOUND, "nobody");
    CHECK(out == NULL && len == 0);
    CHECK(rapport_events_accepted(e) == before);
    /* Best effort: the good two are applied, the bad one is listed. */
    CHECK_OK(rapport_ingest_batch(&out, &len, e, U(lines), strlen(lines), RAPPORT_FORMAT_JSON_LINES,
                                  RAPPORT_BATCH_BEST_EFFORT));
    CHECK(strstr((const char*)out, "\"rejected\"") != NULL);
    CHECK(strstr((const char*)out, "\"b2\"") != NULL);
    CHECK(strstr((const char*)out, "\"accepted\":\"2\"") != NULL ||
          strstr((const char*)out, "\"accepted\":2") != NULL);
    rapport_free(out);
    CHECK(rapport_events_accepted(e) == before + 2);
    /* A line that does not parse fails the call in either mode, naming it. */
    CHECK_FAILS(rapport_ingest_batch(NULL, NULL, e, U("{}\n{oops}\n"), 10,
                                     RAPPORT_FORMAT_JSON_LINES, RAPPORT_BATCH_BEST_EFFORT),
                RAPPORT_INVALID_ARGUMENT, "line 2");
  }

  /* A JSON EventBatch. */
  {
    const char* batch =
        "{\"events\":[{\"eventId\":\"j1\",\"occurredAtUs\":\"1736121600000000\","
        "\"orderCompleted\":{\"orderId\":\"o-1\"}}]}";
    CHECK_OK(rapport_ingest_batch(NULL, NULL, e, U(batch), strlen(batch), RAPPORT_FORMAT_JSON,
                                  RAPPORT_BATCH_ATOMIC));
  }

  /* Protobuf: a delimited stream of two events, and the same two as an
   * EventBatch (field 1, repeated). */
  {
    Buf ev = {{0}, 0}, stream = {{0}, 0}, batch = {{0}, 0};
    int64_t before = rapport_events_accepted(e);
    encode_partner_agreed(&ev, "d1", 1736208000000000, "p-1");
    put_varint(&stream, ev.len);
    memcpy(stream.data + stream.len, ev.data, ev.len);
    stream.len += ev.len;
    put_bytes_field(&batch, 1, ev.data, ev.len);
    encode_partner_agreed(&ev, "d2", 1736208000000001, "p-1");
    put_varint(&stream, ev.len);
    memcpy(stream.data + stream.len, ev.data, ev.len);
    stream.len += ev.len;
    put_bytes_field(&batch, 1, ev.data, ev.len);

    /* Truncated streams are errors that name the event, and change nothing. */
    CHECK_FAILS(rapport_ingest_batch(NULL, NULL, e, stream.data, stream.len - 1,
                                     RAPPORT_FORMAT_PROTOBUF_DELIMITED, RAPPORT_BATCH_ATOMIC),
                RAPPORT_INVALID_ARGUMENT, "event 1");
    {
      uint8_t bad_prefix[3] = {0xff, 0xff, 0xff};
      CHECK_FAILS(rapport_ingest_batch(NULL, NULL, e, bad_prefix, sizeof bad_prefix,
                                       RAPPORT_FORMAT_PROTOBUF_DELIMITED, RAPPORT_BATCH_ATOMIC),
                  RAPPORT_INVALID_ARGUMENT, "event 0");
    }
    CHECK(rapport_events_accepted(e) == before);
    CHECK_OK(rapport_ingest_batch(&out, &len, e, stream.data, stream.len,
                                  RAPPORT_FORMAT_PROTOBUF_DELIMITED, RAPPORT_BATCH_ATOMIC));
    CHECK(out[0] == 0x08 && out[1] == 2); /* accepted = 2 */
    rapport_free(out);
    CHECK(rapport_events_accepted(e) == before + 2);
    /* The same two as an EventBatch: both duplicates. */
    CHECK_OK(rapport_ingest_batch(&out, &len, e, batch.data, batch.len, RAPPORT_FORMAT_PROTOBUF,
                                  RAPPORT_BATCH_ATOMIC));
    CHECK(len == 2 && out[0] == 0x10 && out[1] == 2); /* duplicates = 2 */
    rapport_free(out);
    /* _v2: protobuf in, JSON out. */
    CHECK_OK(rapport_ingest_batch_v2(&out, &len, e, stream.data, stream.len,
                                     RAPPORT_FORMAT_PROTOBUF_DELIMITED, RAPPORT_BATCH_ATOMIC,
                                     RAPPORT_FORMAT_JSON));
    CHECK(strstr((const char*)out, "\"duplicates\"") != NULL);
    rapport_free(out);
    CHECK_FAILS(rapport_ingest_batch_v2(&out, &len, e, stream.data, stream.len,
                                        RAPPORT_FORMAT_PROTOBUF_DELIMITED, RAPPORT_BATCH_ATOMIC,
                                        RAPPORT_FORMAT_JSON_LINES),
                RAPPORT_INVALID_ARGUMENT, "result format 3");
    /* An empty stream is an empty batch. */
    CHECK_OK(rapport_ingest_batch(NULL, NULL, e, NULL, 0, RAPPORT_FORMAT_PROTOBUF_DELIMITED,
                                  RAPPORT_BATCH_ATOMIC));
    CHECK_FAILS(
        rapport_ingest_batch(NULL, NULL, e, batch.data, batch.len, RAPPORT_FORMAT_PROTOBUF, 7),
        RAPPORT_INVALID_ARGUMENT, "batch mode 7");
    CHECK_FAILS(rapport_ingest_batch(NULL, NULL, e, batch.data, batch.len, 9, RAPPORT_BATCH_ATOMIC),
                RAPPORT_INVALID_ARGUMENT, "format 9");
    CHECK_FAILS(rapport_ingest_batch(NULL, NULL, NULL, batch.data, batch.len,
                                     RAPPORT_FORMAT_PROTOBUF, RAPPORT_BATCH_ATOMIC),
                RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    CHECK_FAILS(rapport_ingest_batch(NULL, &len, e, batch.data, batch.len, RAPPORT_FORMAT_PROTOBUF,
                                     RAPPORT_BATCH_ATOMIC),
                RAPPORT_INVALID_ARGUMENT, "both");
    CHECK_FAILS(rapport_ingest_batch(NULL, NULL, e, batch.data, RAPPORT_MAX_INPUT_BYTES + 1,
                                     RAPPORT_FORMAT_PROTOBUF, RAPPORT_BATCH_ATOMIC),
                RAPPORT_RESOURCE_EXHAUSTED, "limit");
  }
  rapport_engine_destroy(e);
}

static void test_reads_and_advance(void) {
  rapport_engine* e = new_engine();
  uint8_t* out = NULL;
  size_t len = 0;
  seed(e);

  CHECK_OK(rapport_get_account(&out, &len, e, "c-1", 3, RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)out, "\"c-1\"") != NULL);
  CHECK(strstr((const char*)out, "ACCOUNT_STATUS_CLIENT") != NULL); /* first order */
  rapport_free(out);
  /* Ids need not be NUL-terminated: "c-1xyz" with length 3 is "c-1". */
  CHECK_OK(rapport_get_account(&out, &len, e, "c-1xyz", 3, RAPPORT_FORMAT_PROTOBUF));
  CHECK(len > 5 && memcmp(out,
                          "\x0a\x03"
                          "c-1",
                          5) == 0); /* Account.account_id first */
  rapport_free(out);
  CHECK_OK(rapport_get_deal(&out, &len, e, "d-1", 3, RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)out, "\"lead\"") != NULL); /* its stage history */
  rapport_free(out);
  CHECK_OK(rapport_get_order(&out, &len, e, "o-1", 3, RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)out, "150000") != NULL);
  rapport_free(out);
  CHECK_OK(rapport_get_manager(&out, &len, e, "m-1", 3, RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)out, "team-1") != NULL);
  rapport_free(out);
  CHECK_OK(rapport_get_team(&out, &len, e, "team-1", 6, RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)out, "North") != NULL);
  rapport_free(out);

  CHECK_FAILS(rapport_get_account(&out, &len, e, "zzz", 3, RAPPORT_FORMAT_JSON), RAPPORT_NOT_FOUND,
              "zzz");
  CHECK(out == NULL && len == 0);
  CHECK_FAILS(rapport_get_deal(&out, &len, e, "zzz", 3, RAPPORT_FORMAT_JSON), RAPPORT_NOT_FOUND,
              "zzz");
  CHECK_FAILS(rapport_get_order(&out, &len, e, "zzz", 3, RAPPORT_FORMAT_JSON), RAPPORT_NOT_FOUND,
              "zzz");
  CHECK_FAILS(rapport_get_manager(&out, &len, e, "zzz", 3, RAPPORT_FORMAT_JSON), RAPPORT_NOT_FOUND,
              "zzz");
  CHECK_FAILS(rapport_get_team(&out, &len, e, "zzz", 3, RAPPORT_FORMAT_JSON), RAPPORT_NOT_FOUND,
              "zzz");
  CHECK_FAILS(rapport_get_account(&out, &len, e, NULL, 0, RAPPORT_FORMAT_JSON),
              RAPPORT_INVALID_ARGUMENT, "id is NULL");
  CHECK_FAILS(rapport_get_account(NULL, &len, e, "c-1", 3, RAPPORT_FORMAT_JSON),
              RAPPORT_INVALID_ARGUMENT, "must not be NULL");
  CHECK_FAILS(rapport_get_account(&out, &len, NULL, "c-1", 3, RAPPORT_FORMAT_JSON),
              RAPPORT_INVALID_ARGUMENT, "must not be NULL");
  CHECK_FAILS(rapport_get_account(&out, &len, e, "c-1", 3, RAPPORT_FORMAT_JSON_LINES),
              RAPPORT_INVALID_ARGUMENT, "format 3");
  {
    char long_id[200];
    memset(long_id, 'a', sizeof long_id);
    CHECK_FAILS(rapport_get_account(&out, &len, e, long_id, sizeof long_id, RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "limit is 128");
  }

  CHECK_OK(rapport_engine_config(&out, &len, e, RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)out, "\"pipelines\"") != NULL); /* defaults filled in */
  rapport_free(out);
  CHECK_FAILS(rapport_engine_config(NULL, NULL, e, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT,
              "must not be NULL");
  CHECK_FAILS(rapport_engine_config(&out, &len, e, 5), RAPPORT_INVALID_ARGUMENT, "format 5");

  /* Advance: the clock moves; actions come back in the format asked for. */
  CHECK(rapport_clock_us(e) == 0);
  CHECK_OK(rapport_advance(&out, &len, e, 1767225600000000, RAPPORT_FORMAT_JSON));
  CHECK(out != NULL && strlen((const char*)out) == len);
  rapport_free(out);
  CHECK(rapport_clock_us(e) == 1767225600000000);
  CHECK_OK(rapport_advance(NULL, NULL, e, 1767225600000001, RAPPORT_FORMAT_PROTOBUF));
  CHECK(rapport_clock_us(e) == 1767225600000001);
  CHECK_FAILS(rapport_advance(NULL, NULL, e, -1, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT,
              "-1");
  CHECK_FAILS(rapport_advance(NULL, NULL, NULL, 1, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT,
              "engine is NULL");
  CHECK_FAILS(rapport_advance(&out, NULL, e, 1, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT,
              "both");
  CHECK_FAILS(rapport_advance(NULL, NULL, e, 1, 8), RAPPORT_INVALID_ARGUMENT, "format 8");
  CHECK(rapport_clock_us(e) == 1767225600000001);
  rapport_engine_destroy(e);
}

static void test_snapshot_restore(void) {
  rapport_engine* e = new_engine();
  rapport_engine* r = NULL;
  uint8_t *snap = NULL, *again = NULL, *json = NULL;
  size_t snap_len = 0, again_len = 0, json_len = 0;
  seed(e);
  CHECK_OK(rapport_engine_snapshot(&snap, &snap_len, e, RAPPORT_FORMAT_PROTOBUF));
  CHECK(snap_len > 0);
  CHECK_OK(rapport_engine_restore(&r, snap, snap_len, RAPPORT_FORMAT_PROTOBUF));
  CHECK(rapport_events_accepted(r) == rapport_events_accepted(e));
  /* Exactly: the restored engine snapshots to the same bytes. */
  CHECK_OK(rapport_engine_snapshot(&again, &again_len, r, RAPPORT_FORMAT_PROTOBUF));
  CHECK(again_len == snap_len && memcmp(again, snap, snap_len) == 0);
  rapport_free(again);
  rapport_engine_destroy(r);

  /* JSON snapshot -> JSON restore -> the same protobuf bytes. */
  CHECK_OK(rapport_engine_snapshot(&json, &json_len, e, RAPPORT_FORMAT_JSON));
  CHECK(json[0] == '{' && strlen((const char*)json) == json_len);
  CHECK_OK(rapport_engine_restore(&r, json, json_len, RAPPORT_FORMAT_JSON));
  CHECK_OK(rapport_engine_snapshot(&again, &again_len, r, RAPPORT_FORMAT_PROTOBUF));
  CHECK(again_len == snap_len && memcmp(again, snap, snap_len) == 0);
  rapport_free(again);
  rapport_engine_destroy(r);

  /* Damaged and wrong-format snapshots. */
  r = (rapport_engine*)&g_checks;
  CHECK(rapport_engine_restore(&r, snap, snap_len / 2, RAPPORT_FORMAT_PROTOBUF) != RAPPORT_OK);
  CHECK(r == NULL && strlen(rapport_last_error_message()) > 0);
  CHECK_FAILS(rapport_engine_restore(&r, snap, snap_len, RAPPORT_FORMAT_JSON),
              RAPPORT_INVALID_ARGUMENT, "");
  CHECK(rapport_engine_restore(&r, json, json_len, RAPPORT_FORMAT_PROTOBUF) != RAPPORT_OK);
  CHECK_FAILS(rapport_engine_restore(&r, json, json_len, RAPPORT_FORMAT_PROTOBUF_DELIMITED),
              RAPPORT_INVALID_ARGUMENT, "format 2");
  CHECK_FAILS(rapport_engine_restore(NULL, snap, snap_len, RAPPORT_FORMAT_PROTOBUF),
              RAPPORT_INVALID_ARGUMENT, "out is NULL");
  CHECK_FAILS(rapport_engine_restore(&r, NULL, 4, RAPPORT_FORMAT_PROTOBUF),
              RAPPORT_INVALID_ARGUMENT, "snapshot is NULL");
  CHECK_FAILS(
      rapport_engine_restore(&r, snap, RAPPORT_MAX_INPUT_BYTES + 1, RAPPORT_FORMAT_PROTOBUF),
      RAPPORT_RESOURCE_EXHAUSTED, "limit");
  CHECK_FAILS(rapport_engine_snapshot(NULL, &snap_len, e, RAPPORT_FORMAT_PROTOBUF),
              RAPPORT_INVALID_ARGUMENT, "must not be NULL");
  CHECK_FAILS(rapport_engine_snapshot(&again, &again_len, NULL, RAPPORT_FORMAT_PROTOBUF),
              RAPPORT_INVALID_ARGUMENT, "must not be NULL");
  CHECK_FAILS(rapport_engine_snapshot(&again, &again_len, e, RAPPORT_FORMAT_JSON_LINES),
              RAPPORT_INVALID_ARGUMENT, "format 3");
  rapport_free(json);
  rapport_free(snap);
  rapport_engine_destroy(e);
}

static void test_kpis(void) {
  const char* query = "{\"startUs\":\"1735689600000000\",\"endUs\":\"1767225600000000\"}";
  const char* bad_query = "{\"startUs\":\"1767225600000000\",\"endUs\":\"1735689600000000\"}";
  rapport_engine* e = new_engine();
  uint8_t *report = NULL, *partial = NULL, *merged = NULL;
  size_t report_len = 0, partial_len = 0, merged_len = 0;
  seed(e);

  CHECK_OK(rapport_kpis(&report, &report_len, e, U(query), strlen(query), RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)report, "\"rows\"") != NULL);
  CHECK(strstr((const char*)report, "\"RUB\"") != NULL); /* the payment's revenue */
  /* One partial merged alone is the report. */
  CHECK_OK(
      rapport_kpi_partial(&partial, &partial_len, e, U(query), strlen(query), RAPPORT_FORMAT_JSON));
  {
    const uint8_t* parts[1];
    size_t lens[1];
    parts[0] = partial;
    lens[0] = partial_len;
    CHECK_OK(rapport_kpi_merge(&merged, &merged_len, parts, lens, 1, RAPPORT_FORMAT_JSON));
    CHECK(merged_len == report_len && memcmp(merged, report, report_len) == 0);
    rapport_free(merged);
    /* The same accounts in two partials (their health rows tell), and
     * partials of different queries, cannot merge. */
    {
      const char* with_health =
          "{\"startUs\":\"1735689600000000\",\"endUs\":\"1767225600000000\","
          "\"includeHealth\":true}";
      uint8_t* hp = NULL;
      size_t hp_len = 0;
      const uint8_t* two[2];
      size_t two_lens[2];
      CHECK_OK(rapport_kpi_partial(&hp, &hp_len, e, U(with_health), strlen(with_health),
                                   RAPPORT_FORMAT_JSON));
      two[0] = two[1] = hp;
      two_lens[0] = two_lens[1] = hp_len;
      CHECK_FAILS(rapport_kpi_merge(&merged, &merged_len, two, two_lens, 2, RAPPORT_FORMAT_JSON),
                  RAPPORT_INVALID_ARGUMENT, "two partials");
      CHECK(merged == NULL && merged_len == 0);
      two[1] = partial;
      two_lens[1] = partial_len;
      CHECK_FAILS(rapport_kpi_merge(&merged, &merged_len, two, two_lens, 2, RAPPORT_FORMAT_JSON),
                  RAPPORT_INVALID_ARGUMENT, "another query");
      rapport_free(hp);
    }
    CHECK_FAILS(rapport_kpi_merge(&merged, &merged_len, parts, lens, 0, RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "count is 0");
    CHECK_FAILS(rapport_kpi_merge(&merged, &merged_len, NULL, lens, 1, RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "must not be NULL");
    CHECK_FAILS(rapport_kpi_merge(NULL, &merged_len, parts, lens, 1, RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "must not be NULL");
    CHECK_FAILS(rapport_kpi_merge(&merged, &merged_len, parts, lens, 1, RAPPORT_FORMAT_PROTOBUF),
                RAPPORT_INVALID_ARGUMENT, "partial 0");
    CHECK_FAILS(rapport_kpi_merge(&merged, &merged_len, parts, lens, 1, 6),
                RAPPORT_INVALID_ARGUMENT, "format 6");
    lens[0] = RAPPORT_MAX_INPUT_BYTES + 1;
    CHECK_FAILS(rapport_kpi_merge(&merged, &merged_len, parts, lens, 1, RAPPORT_FORMAT_JSON),
                RAPPORT_RESOURCE_EXHAUSTED, "limit");
  }
  rapport_free(partial);
  rapport_free(report);
  /* The protobuf path: KpiQuery{start_us = 1, end_us = 2} encoded by hand;
   * the report echoes the query as its field 1. */
  {
    Buf q = {{0}, 0};
    put_varint_field(&q, 1, 1735689600000000);
    put_varint_field(&q, 2, 1767225600000000);
    CHECK_OK(rapport_kpis(&report, &report_len, e, q.data, q.len, RAPPORT_FORMAT_PROTOBUF));
    CHECK(report_len > q.len + 2 && report[0] == 0x0a && report[1] >= q.len &&
          memcmp(report + 2, q.data, q.len) == 0);
    rapport_free(report);
    CHECK_OK(
        rapport_kpi_partial(&partial, &partial_len, e, q.data, q.len, RAPPORT_FORMAT_PROTOBUF));
    {
      const uint8_t* parts[1];
      size_t lens[1];
      parts[0] = partial;
      lens[0] = partial_len;
      CHECK_OK(rapport_kpi_merge(&merged, &merged_len, parts, lens, 1, RAPPORT_FORMAT_PROTOBUF));
      CHECK(merged_len > 0 && merged[0] == 0x0a);
      rapport_free(merged);
    }
    rapport_free(partial);
  }

  CHECK_FAILS(
      rapport_kpis(&report, &report_len, e, U(bad_query), strlen(bad_query), RAPPORT_FORMAT_JSON),
      RAPPORT_INVALID_ARGUMENT, "");
  CHECK(report == NULL);
  CHECK_FAILS(rapport_kpi_partial(&partial, &partial_len, e, U(bad_query), strlen(bad_query),
                                  RAPPORT_FORMAT_JSON),
              RAPPORT_INVALID_ARGUMENT, "");
  CHECK_FAILS(
      rapport_kpis(&report, &report_len, e, U("{\"bucket\":\"NOPE\"}"), 17, RAPPORT_FORMAT_JSON),
      RAPPORT_INVALID_ARGUMENT, "");
  CHECK_FAILS(
      rapport_kpis(&report, &report_len, e, U(query), strlen(query), RAPPORT_FORMAT_PROTOBUF),
      RAPPORT_INVALID_ARGUMENT, "rapport.v1.KpiQuery");
  CHECK_FAILS(
      rapport_kpis(&report, &report_len, NULL, U(query), strlen(query), RAPPORT_FORMAT_JSON),
      RAPPORT_INVALID_ARGUMENT, "must not be NULL");
  CHECK_FAILS(rapport_kpis(&report, &report_len, e, NULL, 3, RAPPORT_FORMAT_JSON),
              RAPPORT_INVALID_ARGUMENT, "query is NULL");
  CHECK_FAILS(rapport_kpi_partial(&partial, &partial_len, e, U(query), RAPPORT_MAX_INPUT_BYTES + 1,
                                  RAPPORT_FORMAT_JSON),
              RAPPORT_RESOURCE_EXHAUSTED, "limit");
  rapport_engine_destroy(e);
}

static void remove_tree(const char* dir) {
  DIR* d = opendir(dir);
  struct dirent* ent;
  char path[4096];
  if (d == NULL) return;
  while ((ent = readdir(d)) != NULL) {
    if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
    snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
    CHECK(unlink(path) == 0);
  }
  closedir(d);
  CHECK(rmdir(dir) == 0);
}

static void test_persistence(void) {
  char tmpl[] = "/tmp/rapport_c_api_test.XXXXXX";
  char* dir = mkdtemp(tmpl);
  rapport_engine *e = NULL, *second = NULL;
  int64_t accepted;
  CHECK(dir != NULL);

  CHECK_OK(rapport_engine_open(&e, dir, NULL, 0, RAPPORT_FORMAT_JSON, RAPPORT_SYNC_OFF, 0));
  seed(e);
  accepted = rapport_events_accepted(e);
  CHECK_OK(rapport_advance(NULL, NULL, e, 1767225600000000, RAPPORT_FORMAT_JSON));
  /* The directory is locked while the engine lives. */
  second = (rapport_engine*)&g_checks;
  CHECK_FAILS(rapport_engine_open(&second, dir, NULL, 0, RAPPORT_FORMAT_JSON, RAPPORT_SYNC_OFF, 0),
              RAPPORT_FAILED_PRECONDITION, "");
  CHECK(second == NULL);
  CHECK_OK(rapport_engine_checkpoint(e));
  rapport_engine_destroy(e);

  /* Reopened (with recovery allowed), it continues where it stopped. */
  CHECK_OK(rapport_engine_open(&e, dir, U("{}"), 2, RAPPORT_FORMAT_JSON, RAPPORT_SYNC_PER_BATCH,
                               RAPPORT_OPEN_POINT_IN_TIME_RECOVERY));
  CHECK(rapport_events_accepted(e) == accepted);
  CHECK(rapport_clock_us(e) == 1767225600000000);
  rapport_engine_destroy(e);

  /* The journal's policy: a snapshot after every write. */
  CHECK_OK(rapport_engine_open_v2(&e, dir, NULL, 0, RAPPORT_FORMAT_JSON, RAPPORT_SYNC_OFF, 0, 1,
                                  1 << 20));
  CHECK(rapport_events_accepted(e) == accepted);
  rapport_engine_destroy(e);
  CHECK_FAILS(
      rapport_engine_open_v2(&e, dir, NULL, 0, RAPPORT_FORMAT_JSON, RAPPORT_SYNC_OFF, 0, -2, -1),
      RAPPORT_INVALID_ARGUMENT, "snapshot_every_bytes -2");
  CHECK_FAILS(
      rapport_engine_open_v2(&e, dir, NULL, 0, RAPPORT_FORMAT_JSON, RAPPORT_SYNC_OFF, 0, -1, 0),
      RAPPORT_INVALID_ARGUMENT, "segment_bytes 0");
  CHECK(e == NULL);
  CHECK_FAILS(rapport_engine_open(&e, dir, NULL, 0, RAPPORT_FORMAT_JSON, 9, 0),
              RAPPORT_INVALID_ARGUMENT, "sync mode 9");
  CHECK_FAILS(
      rapport_engine_open(&e, dir, NULL, 0, RAPPORT_FORMAT_JSON, RAPPORT_SYNC_GROUP_COMMIT, 0x10),
      RAPPORT_INVALID_ARGUMENT, "unknown bits");
  CHECK_FAILS(rapport_engine_open(&e, NULL, NULL, 0, RAPPORT_FORMAT_JSON, RAPPORT_SYNC_OFF, 0),
              RAPPORT_INVALID_ARGUMENT, "dir");
  CHECK_FAILS(rapport_engine_open(NULL, dir, NULL, 0, RAPPORT_FORMAT_JSON, RAPPORT_SYNC_OFF, 0),
              RAPPORT_INVALID_ARGUMENT, "out is NULL");
  CHECK_FAILS(rapport_engine_open(&e, dir, U("{x"), 2, RAPPORT_FORMAT_JSON, RAPPORT_SYNC_OFF, 0),
              RAPPORT_INVALID_ARGUMENT, "");
  CHECK(rapport_engine_open(&e, "/nonexistent-parent/rapport", NULL, 0, RAPPORT_FORMAT_JSON,
                            RAPPORT_SYNC_OFF, 0) != RAPPORT_OK);
  CHECK(strstr(rapport_last_error_message(), "/nonexistent-parent") != NULL);
  CHECK(e == NULL);
  remove_tree(dir);

  /* Checkpoint needs a persistent engine. */
  e = new_engine();
  CHECK_FAILS(rapport_engine_checkpoint(e), RAPPORT_FAILED_PRECONDITION, "");
  CHECK_FAILS(rapport_engine_checkpoint(NULL), RAPPORT_INVALID_ARGUMENT, "engine is NULL");
  rapport_engine_destroy(e);
}

/* Copies the first "action_id" of a JSON ActionList into `id`. */
static int first_action_id(const char* json, char* id, size_t cap) {
  const char* key = "\"action_id\":\"";
  const char* p = strstr(json, key);
  size_t n = 0;
  if (p == NULL) key = "\"actionId\":\"", p = strstr(json, key);
  if (p == NULL) return 0;
  p += strlen(key);
  while (p[n] != '"' && n + 1 < cap) ++n;
  memcpy(id, p, n);
  id[n] = 0;
  return (int)n;
}

static void test_regulations(void) {
  rapport_engine* e = new_engine();
  uint8_t* out = NULL;
  size_t len = 0;
  char id[256];
  const char* ids[2];
  size_t lens[2];
  seed(e);
  /* P1 of the default playbook: the first outbound call to a partner
   * prospect asks for a message through its preferred written channel. */
  CHECK_OK(rapport_outbox(&out, &len, e, RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)out, "after_first_call") == NULL);
  rapport_free(out);
  ingest_json(e,
              "{\"eventId\":\"call\",\"occurredAtUs\":\"1736035200000000\",\"activity\":{"
              "\"accountId\":\"p-1\",\"managerId\":\"m-1\",\"kind\":\"ACTIVITY_KIND_CALL\","
              "\"direction\":\"DIRECTION_OUTBOUND\"}}");
  CHECK_OK(rapport_outbox(&out, &len, e, RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)out, "after_first_call") != NULL);
  CHECK(strstr((const char*)out, "CHANNEL_EMAIL") != NULL);
  CHECK(first_action_id((const char*)out, id, sizeof id) > 0);
  rapport_free(out);

  /* Errors change nothing: an unknown id, a repeated one. */
  ids[0] = id;
  lens[0] = strlen(id);
  ids[1] = "no-such-action";
  lens[1] = strlen(ids[1]);
  CHECK_FAILS(rapport_acknowledge(e, ids, lens, 2), RAPPORT_NOT_FOUND, "no-such-action");
  ids[1] = id;
  lens[1] = lens[0];
  CHECK_FAILS(rapport_acknowledge(e, ids, lens, 2), RAPPORT_INVALID_ARGUMENT, id);
  CHECK_OK(rapport_outbox(&out, &len, e, RAPPORT_FORMAT_PROTOBUF));
  CHECK(len > 0);
  rapport_free(out);
  CHECK_OK(rapport_outbox(&out, &len, e, RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)out, id) != NULL);
  rapport_free(out);
  /* Acknowledged, the message leaves the outbox; again is a no-op. */
  CHECK_OK(rapport_acknowledge(e, ids, lens, 1));
  CHECK_OK(rapport_outbox(&out, &len, e, RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)out, id) == NULL);
  rapport_free(out);
  CHECK_OK(rapport_acknowledge(e, ids, lens, 1));
  CHECK_OK(rapport_acknowledge(e, NULL, NULL, 0));
  CHECK_FAILS(rapport_acknowledge(NULL, ids, lens, 1), RAPPORT_INVALID_ARGUMENT, "engine is NULL");
  CHECK_FAILS(rapport_acknowledge(e, NULL, lens, 1), RAPPORT_INVALID_ARGUMENT, "must not be NULL");
  ids[1] = NULL;
  CHECK_FAILS(rapport_acknowledge(e, ids, lens, 2), RAPPORT_INVALID_ARGUMENT, "ids[1] is NULL");
  lens[0] = 500;
  CHECK_FAILS(rapport_acknowledge(e, ids, lens, 1), RAPPORT_INVALID_ARGUMENT, "limit is 128");
  CHECK_FAILS(rapport_outbox(NULL, &len, e, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT,
              "must not be NULL");
  CHECK_FAILS(rapport_outbox(&out, &len, e, 4), RAPPORT_INVALID_ARGUMENT, "format 4");

  /* A rule set from text format and from JSON; errors name the problem. */
  {
    const char* text =
        "id: \"mine\" version: 2 templates: \"hello\" rules { id: \"R-1\" trigger { on_event { "
        "filter { type: EVENT_TYPE_PARTNER_AGREED } } } actions { kind: ACTION_KIND_SEND_MESSAGE "
        "template: \"hello\" } }";
    const char* bad =
        "id: \"mine\" version: 1 rules { id: \"R-1\" trigger { on_event { filter { type: "
        "EVENT_TYPE_PARTNER_AGREED } } } actions { kind: ACTION_KIND_MOVE_STAGE "
        "to_stage: \"no_such_stage\" } }";
    uint8_t* json = NULL;
    size_t json_len = 0;
    CHECK_OK(
        rapport_load_rule_set(&json, &json_len, text, strlen(text), NULL, 0, RAPPORT_FORMAT_JSON));
    CHECK(strstr((const char*)json, "\"R-1\"") != NULL);
    /* Its JSON loads back to the same protobuf bytes as the text. */
    CHECK_OK(
        rapport_load_rule_set(&out, &len, text, strlen(text), NULL, 0, RAPPORT_FORMAT_PROTOBUF));
    {
      uint8_t* again = NULL;
      size_t again_len = 0;
      CHECK_OK(rapport_load_rule_set(&again, &again_len, (const char*)json, json_len, NULL, 0,
                                     RAPPORT_FORMAT_PROTOBUF));
      CHECK(again_len == len && memcmp(again, out, len) == 0);
      rapport_free(again);
    }
    rapport_free(out);
    rapport_free(json);
    CHECK_FAILS(rapport_load_rule_set(&out, &len, bad, strlen(bad), NULL, 0, RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "R-1");
    CHECK_FAILS(rapport_load_rule_set(&out, &len, "rules {", 7, NULL, 0, RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "");
    CHECK_FAILS(
        rapport_load_rule_set(&out, &len, text, strlen(text), U("{x"), 2, RAPPORT_FORMAT_JSON),
        RAPPORT_INVALID_ARGUMENT, "");
    CHECK_FAILS(rapport_load_rule_set(NULL, &len, text, strlen(text), NULL, 0, RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "must not be NULL");
    CHECK_FAILS(rapport_load_rule_set(&out, &len, NULL, 5, NULL, 0, RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "text is NULL");
    CHECK_FAILS(rapport_load_rule_set(&out, &len, text, RAPPORT_MAX_INPUT_BYTES + 1, NULL, 0,
                                      RAPPORT_FORMAT_JSON),
                RAPPORT_RESOURCE_EXHAUSTED, "limit");
  }
  rapport_engine_destroy(e);
}

static void test_grades(void) {
  rapport_engine* e = new_engine();
  uint8_t* out = NULL;
  size_t len = 0;
  seed(e);
  CHECK_OK(rapport_grades(&out, &len, e, 1767225600000000, RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)out, "\"m-1\"") != NULL);
  CHECK(strstr((const char*)out, "eligible") != NULL);
  rapport_free(out);
  CHECK_OK(rapport_grades(&out, &len, e, 1767225600000000, RAPPORT_FORMAT_PROTOBUF));
  CHECK(len > 0 && out[0] == 0x08); /* GradeEvaluation.as_of_us */
  rapport_free(out);
  CHECK_FAILS(rapport_grades(&out, &len, e, -5, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT, "");
  CHECK(out == NULL && len == 0);
  CHECK_FAILS(rapport_grades(&out, &len, NULL, 0, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT,
              "must not be NULL");
  CHECK_FAILS(rapport_grades(&out, &len, e, 0, 3), RAPPORT_INVALID_ARGUMENT, "format 3");
  rapport_engine_destroy(e);
}

static void test_lists(void) {
  rapport_engine* e = new_engine();
  uint8_t* out = NULL;
  size_t len = 0;
  int64_t counts[16];
  size_t written = 0;
  seed(e);
  /* ACCOUNT_STATUS_CLIENT = 4: c-1 (first order placed). */
  CHECK_OK(rapport_accounts_by_status(&out, &len, e, 4, RAPPORT_FORMAT_JSON_LINES));
  CHECK(strstr((const char*)out, "\"c-1\"") != NULL && strchr((const char*)out, '\n') != NULL);
  CHECK(strstr((const char*)out, "\"account_id\":\"p-1\"") == NULL);
  rapport_free(out);
  /* Delimited: one Account of `len - 1` bytes whose field 1 is "c-1". */
  CHECK_OK(rapport_accounts_by_status(&out, &len, e, 4, RAPPORT_FORMAT_PROTOBUF_DELIMITED));
  CHECK(len > 6 && out[0] == len - 1 &&
        memcmp(out + 1,
               "\x0a\x03"
               "c-1",
               5) == 0);
  rapport_free(out);
  /* None churned: an empty, still allocated, buffer. */
  CHECK_OK(rapport_accounts_by_status(&out, &len, e, 6, RAPPORT_FORMAT_JSON_LINES));
  CHECK(out != NULL && len == 0);
  rapport_free(out);
  CHECK_FAILS(rapport_accounts_by_status(&out, &len, e, 77, RAPPORT_FORMAT_JSON_LINES),
              RAPPORT_INVALID_ARGUMENT, "77");
  CHECK_FAILS(rapport_accounts_by_status(&out, &len, e, 4, RAPPORT_FORMAT_JSON),
              RAPPORT_INVALID_ARGUMENT, "format 1");
  CHECK_FAILS(rapport_accounts_by_status(&out, &len, NULL, 4, RAPPORT_FORMAT_JSON_LINES),
              RAPPORT_INVALID_ARGUMENT, "must not be NULL");

  CHECK_OK(rapport_deals_by_stage(&out, &len, e, RAPPORT_FORMAT_JSON_LINES));
  CHECK(strstr((const char*)out, "\"lead\"") != NULL && strstr((const char*)out, "closed"));
  rapport_free(out);
  CHECK_FAILS(rapport_deals_by_stage(&out, &len, e, RAPPORT_FORMAT_PROTOBUF),
              RAPPORT_INVALID_ARGUMENT, "format 0");
  /* d-1 entered "lead" (3-day SLA) on day 1: stuck a year later, not before. */
  CHECK_OK(rapport_stuck_deals(&out, &len, e, 1767225600000000, RAPPORT_FORMAT_JSON_LINES));
  CHECK(strstr((const char*)out, "\"d-1\"") != NULL);
  rapport_free(out);
  CHECK_OK(rapport_stuck_deals(&out, &len, e, 1735776000000001, RAPPORT_FORMAT_JSON_LINES));
  CHECK(len == 0);
  rapport_free(out);
  CHECK_FAILS(rapport_stuck_deals(NULL, &len, e, 0, RAPPORT_FORMAT_JSON_LINES),
              RAPPORT_INVALID_ARGUMENT, "must not be NULL");

  CHECK_OK(rapport_account_status_counts(counts, 16, &written, e));
  CHECK(written == 7 && counts[1] == 1 && counts[4] == 1); /* p-1 prospect, c-1 client */
  CHECK_OK(rapport_account_status_counts(NULL, 0, &written, e));
  CHECK(written == 7);
  CHECK_OK(rapport_account_status_counts(counts, 2, NULL, e));
  CHECK_FAILS(rapport_account_status_counts(NULL, 3, &written, e), RAPPORT_INVALID_ARGUMENT,
              "counts is NULL");
  CHECK_FAILS(rapport_account_status_counts(counts, 16, &written, NULL), RAPPORT_INVALID_ARGUMENT,
              "engine is NULL");
  rapport_engine_destroy(e);
}

/* A view's refresh gives the bytes rapport_kpis() gives for its query, in
 * both formats, before and after the engine changes (the kept report is
 * refilled, never stale); its errors; ownership (ASan: no leak, no use of a
 * freed buffer). */
static void check_view_matches(rapport_kpi_view* v, const rapport_engine* e, const uint8_t* q,
                               size_t q_len, int format) {
  const uint8_t* got = NULL;
  size_t got_len = 0;
  uint8_t* want = NULL;
  size_t want_len = 0;
  CHECK_OK(rapport_kpi_view_refresh(&got, &got_len, v));
  CHECK_OK(rapport_kpis(&want, &want_len, e, q, q_len, format));
  CHECK(got != NULL && got_len == want_len && memcmp(got, want, want_len) == 0);
  if (format == RAPPORT_FORMAT_JSON) CHECK(got[got_len] == 0);
  rapport_free(want);
}

static void test_kpi_view(void) {
  const char* query = "{\"startUs\":\"1735689600000000\",\"endUs\":\"1767225600000000\"}";
  const char* bad_query = "{\"startUs\":\"1767225600000000\",\"endUs\":\"1735689600000000\"}";
  const char* more =
      "{\"eventId\":\"pay-2\",\"occurredAtUs\":\"1736035200000000\","
      "\"paymentReceived\":{\"accountId\":\"c-1\",\"orderId\":\"o-1\","
      "\"amount\":{\"amountMinor\":\"70000\",\"currency\":\"USD\"}}}";
  rapport_engine* e = new_engine();
  rapport_kpi_view *jv = NULL, *pv = NULL, *ev = NULL;
  const uint8_t* got = NULL;
  const uint8_t* before = NULL;
  size_t got_len = 0, before_len = 0;
  Buf q = {{0}, 0};
  put_varint_field(&q, 1, 1735689600000000);
  put_varint_field(&q, 2, 1767225600000000);

  /* Views of a seeded engine (not of an empty one: KPIs of an engine with
   * no accounts crash in lib/kpi/report.cc, rapport_kpis() too; reported),
   * then the engine changes. */
  seed(e);
  CHECK_OK(rapport_kpi_view_create(&jv, e, U(query), strlen(query), RAPPORT_FORMAT_JSON));
  CHECK(jv != NULL);
  CHECK_OK(rapport_kpi_view_create(&pv, e, q.data, q.len, RAPPORT_FORMAT_PROTOBUF));
  /* The empty query (NULL, 0) is taken, and refused as rapport_kpis() does. */
  CHECK_FAILS(rapport_kpi_view_create(&ev, e, NULL, 0, RAPPORT_FORMAT_PROTOBUF),
              RAPPORT_INVALID_ARGUMENT, "period");
  CHECK(ev == NULL);
  check_view_matches(jv, e, U(query), strlen(query), RAPPORT_FORMAT_JSON);
  check_view_matches(pv, e, q.data, q.len, RAPPORT_FORMAT_PROTOBUF);
  CHECK_OK(rapport_kpi_view_refresh(&before, &before_len, jv));
  CHECK(strstr((const char*)before, "\"RUB\"") != NULL);
  CHECK(strstr((const char*)before, "\"USD\"") == NULL);
  ingest_json(e, more);
  check_view_matches(jv, e, U(query), strlen(query), RAPPORT_FORMAT_JSON);
  check_view_matches(pv, e, q.data, q.len, RAPPORT_FORMAT_PROTOBUF);
  CHECK_OK(rapport_kpi_view_refresh(&got, &got_len, jv));
  CHECK(strstr((const char*)got, "\"USD\"") != NULL); /* the new payment shows */
  /* Refreshing again with nothing new gives the same bytes. */
  {
    char* copy = (char*)malloc(got_len + 1);
    CHECK(copy != NULL);
    memcpy(copy, got, got_len + 1);
    CHECK_OK(rapport_kpi_view_refresh(&got, &got_len, jv));
    CHECK(strlen(copy) == got_len && memcmp(copy, got, got_len) == 0);
    free(copy);
  }

  /* Bad input: nothing is created, out is NULL, the message says why. */
  {
    rapport_kpi_view* bad = (rapport_kpi_view*)&q; /* must be overwritten */
    CHECK_FAILS(
        rapport_kpi_view_create(&bad, e, U(bad_query), strlen(bad_query), RAPPORT_FORMAT_JSON),
        RAPPORT_INVALID_ARGUMENT, "");
    CHECK(bad == NULL);
    CHECK_FAILS(
        rapport_kpi_view_create(&bad, e, U("{\"bucket\":\"NOPE\"}"), 17, RAPPORT_FORMAT_JSON),
        RAPPORT_INVALID_ARGUMENT, "NOPE");
    CHECK_FAILS(rapport_kpi_view_create(&bad, e, U("{"), 1, RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "rapport.v1.KpiQuery");
    CHECK_FAILS(rapport_kpi_view_create(&bad, e, U(query), strlen(query), RAPPORT_FORMAT_PROTOBUF),
                RAPPORT_INVALID_ARGUMENT, "rapport.v1.KpiQuery");
    CHECK_FAILS(
        rapport_kpi_view_create(&bad, e, U(query), strlen(query), RAPPORT_FORMAT_JSON_LINES),
        RAPPORT_INVALID_ARGUMENT, "format 3");
    CHECK_FAILS(rapport_kpi_view_create(&bad, e, U(query), strlen(query), 9),
                RAPPORT_INVALID_ARGUMENT, "format 9");
    CHECK_FAILS(rapport_kpi_view_create(&bad, NULL, U(query), strlen(query), RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "engine is NULL");
    CHECK_FAILS(rapport_kpi_view_create(&bad, e, NULL, 3, RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "query is NULL");
    CHECK_FAILS(rapport_kpi_view_create(&bad, e, U(query), RAPPORT_MAX_INPUT_BYTES + 1,
                                        RAPPORT_FORMAT_JSON),
                RAPPORT_RESOURCE_EXHAUSTED, "limit");
    CHECK(bad == NULL);
    CHECK_FAILS(rapport_kpi_view_create(NULL, e, U(query), strlen(query), RAPPORT_FORMAT_JSON),
                RAPPORT_INVALID_ARGUMENT, "out is NULL");
  }
  got = U("x");
  got_len = 5;
  CHECK_FAILS(rapport_kpi_view_refresh(&got, &got_len, NULL), RAPPORT_INVALID_ARGUMENT,
              "must not be NULL");
  CHECK(got == NULL && got_len == 0);
  CHECK_FAILS(rapport_kpi_view_refresh(NULL, &got_len, jv), RAPPORT_INVALID_ARGUMENT,
              "must not be NULL");
  CHECK_FAILS(rapport_kpi_view_refresh(&got, NULL, jv), RAPPORT_INVALID_ARGUMENT,
              "must not be NULL");
  /* A failed call leaves the view usable. */
  check_view_matches(jv, e, U(query), strlen(query), RAPPORT_FORMAT_JSON);

  rapport_kpi_view_destroy(NULL); /* a no-op */
  rapport_kpi_view_destroy(jv);
  rapport_kpi_view_destroy(pv);
  rapport_engine_destroy(e);
}

/* The defaults, without an engine: what an engine created with no config
 * reports as its configuration. */
static void test_default_config(void) {
  rapport_engine* e = new_engine();
  uint8_t *def = NULL, *cfg = NULL;
  size_t def_len = 0, cfg_len = 0;
  int format;
  for (format = RAPPORT_FORMAT_PROTOBUF; format <= RAPPORT_FORMAT_JSON; ++format) {
    CHECK_OK(rapport_default_config(&def, &def_len, format));
    CHECK_OK(rapport_engine_config(&cfg, &cfg_len, e, format));
    CHECK(def_len > 0 && def_len == cfg_len && memcmp(def, cfg, def_len) == 0);
    rapport_free(def);
    rapport_free(cfg);
  }
  CHECK_OK(rapport_default_config(&def, &def_len, RAPPORT_FORMAT_JSON));
  CHECK(strstr((const char*)def, "\"partner\"") != NULL && def[def_len] == 0);
  rapport_free(def);
  def = (uint8_t*)&def_len; /* must be overwritten */
  CHECK_FAILS(rapport_default_config(&def, &def_len, RAPPORT_FORMAT_JSON_LINES),
              RAPPORT_INVALID_ARGUMENT, "format 3");
  CHECK(def == NULL && def_len == 0);
  CHECK_FAILS(rapport_default_config(NULL, &def_len, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT,
              "must not be NULL");
  CHECK_FAILS(rapport_default_config(&def, NULL, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT,
              "must not be NULL");
  rapport_engine_destroy(e);
}

int main(void) {
  test_basics();
  test_create();
  test_ingest_event();
  test_ingest_batch();
  test_reads_and_advance();
  test_snapshot_restore();
  test_kpis();
  test_kpi_view();
  test_default_config();
  test_persistence();
  test_regulations();
  test_grades();
  test_lists();
  printf("c_api_test: %d checks passed\n", g_checks);
  return 0;
}
