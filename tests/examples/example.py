import rapport

with rapport.Engine() as engine:  # default pipelines and playbook
    engine.ingest([  # dicts, JSON text, protobuf messages or bytes; any iterable
        {"event_id": "e1", "occurred_at_us": 1735689600000000, "manager_upserted": {"manager_id": "ann"}},
        {"event_id": "e2", "occurred_at_us": 1735689600000000, "account_upserted": {
            "account_id": "acme", "kind": "ACCOUNT_KIND_PARTNER", "owner_id": "ann"}},
        {"event_id": "e3", "occurred_at_us": 1735776000000000, "partner_agreed": {"account_id": "acme"}},
    ])
    print(engine.account("acme")["status"])  # ACCOUNT_STATUS_ACTIVE
    for action in engine.outbox():  # P2: a product_training task for ann
        print(action["rule_id"], action["template"], action["assignee_id"])
        engine.acknowledge(action["action_id"])
    report = engine.kpis({"start_us": 1735689600000000, "end_us": 1767225600000000})
    print("partners_new:", report["rows"][0]["values"]["partners_new"])
