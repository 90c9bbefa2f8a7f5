-- Signed webhooks (docs/webhooks.md).
--
-- The endpoints an organisation admin registered. `events` is the comma-separated list of
-- event types it subscribes to; `secret` signs every delivery, so it is kept as issued (the
-- server must be able to compute the HMAC; see docs/webhooks.md on protecting the database).
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints(org_id);

-- The delivery log, which is also the outbox: a delivery is written `pending` before its
-- first attempt and stays so, with `next_attempt_ms` moved on, until it is `delivered` or
-- `failed`. Times in Unix milliseconds.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    org_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    last_status BIGINT,
    last_error TEXT,
    last_attempt_ms BIGINT,
    delivered_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_ms);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, created_at_ms);
