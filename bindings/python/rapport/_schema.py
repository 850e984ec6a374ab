"""Field names of the rapport.v1 schema whose type is a 64-bit integer.

Protobuf's JSON mapping writes 64-bit integers as strings ("accepted": "2");
the Pythonic layer turns the strings of these fields back into ints so that
results are plain dicts of plain values. Only digit strings convert, so a
name that other messages use for a double or a message ("value", "deals")
is safe. A test re-derives this set from proto/rapport/v1/*.proto and fails
when a schema change makes it stale.
"""

INT64_FIELDS = frozenset((
    "accepted", "accounts_owned", "amount_minor", "as_of_us", "at_least", "at_most",
    "bucket_end_us", "bucket_start_us", "calls_inbound", "calls_outbound", "case_studies",
    "client_churn_after_us", "clients_new", "clock_us", "completed_at_us", "created_at_us",
    "deals", "delay_us", "denominator", "due_at_us", "due_offset_us", "duplicates", "dwell_us",
    "effective_at_us", "emails_inbound", "emails_outbound", "end_us", "entered_at_us",
    "event_fingerprints", "events_accepted", "fired_at_us", "hired_at_us", "hunter_window_us",
    "index", "issued_at_us", "kind_sizes", "last_feedback_at_us", "last_order_at_us",
    "last_outbound_at_us", "lead_us", "leads", "left_at_us", "lost_at_us", "max_accounts",
    "meetings_inbound", "meetings_outbound", "messengers_inbound", "messengers_outbound",
    "new_due_at_us", "nps_detractors", "nps_promoters", "nps_responses", "numerator",
    "occurred_at_delta_us", "occurred_at_us", "open_complaints", "opened_at_us", "order_count",
    "order_seq", "paid_minor",
    "partners_active_end", "partners_active_start", "partners_churned", "partners_new",
    "placed_at_us", "previous_minor", "receivables_overdue_count", "resolved_at_us",
    "rule_set_version", "seq", "since_us", "sla_us", "start_us", "status_since_us", "stuck_deals",
    "timer_fire_at_us", "times_us", "value", "version", "window_us", "won_at_us",
))
