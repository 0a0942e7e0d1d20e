-- Webhooks, the senders' leases: whose a delivery is while it is being sent.
--
-- `lease_until` in the future with a `lease_token` is a worker's hold while it sends
-- (only that worker records the try, guarded by the token); with no token it marks a
-- delivery whose message was just published, so that the sweeper does not publish it
-- again until then (a message lost with Redis is published again once it passes). A
-- try recorded clears both.
ALTER TABLE webhook_deliveries ADD COLUMN lease_token text;
