-- Webhook endpoints can be edited and their secret rolled (docs/webhooks.md, "The secret"):
-- after a roll the previous secret still signs deliveries, beside the new one, until
-- `previous_secret_until` (Unix seconds), so a receiver can switch without missing one.
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret TEXT;
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_until BIGINT;
