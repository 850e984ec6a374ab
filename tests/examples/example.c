#include <stdio.h>
#include <string.h>
#include "rapport/rapport.h"

int main(void) {
  const char* events = /* JSON lines: one rapport.v1.Event per line */
      "{\"event_id\":\"e1\",\"occurred_at_us\":\"1735689600000000\","
      "\"manager_upserted\":{\"manager_id\":\"ann\"}}\n"
      "{\"event_id\":\"e2\",\"occurred_at_us\":\"1735689600000000\",\"account_upserted\":"
      "{\"account_id\":\"acme\",\"kind\":\"ACCOUNT_KIND_PARTNER\",\"owner_id\":\"ann\"}}\n"
      "{\"event_id\":\"e3\",\"occurred_at_us\":\"1735776000000000\","
      "\"partner_agreed\":{\"account_id\":\"acme\"}}\n";
  rapport_engine* engine = NULL;
  uint8_t* account = NULL; /* results are the caller's, released with rapport_free() */
  size_t len = 0;
  int rc = rapport_engine_create(&engine, NULL, 0, RAPPORT_FORMAT_JSON);
  const uint8_t* bytes = (const uint8_t*)events; /* input is borrowed for the call */
  if (!rc)
    rc = rapport_ingest_batch(NULL, NULL, engine, bytes, strlen(events), RAPPORT_FORMAT_JSON_LINES,
                              RAPPORT_BATCH_ATOMIC);
  if (!rc) rc = rapport_get_account(&account, &len, engine, "acme", 4, RAPPORT_FORMAT_JSON);
  printf("%s\n", rc ? rapport_last_error_message() : (const char*)account); /* JSON ends in NUL */
  rapport_free(account);
  rapport_engine_destroy(engine);
  return rc;
}
