-- Due deliveries are published caller by caller: every caller with deliveries due
-- has its oldest published first, then every caller's second, and so on
-- (publish_due_deliveries). Published oldest due first, a backlog of one caller's
-- retries (to receivers that hang, say) came before every other caller's until it
-- drained, and a process's tries in flight went to it alone. The PENDING deliveries
-- by caller, then by when each is due: the callers with deliveries pending are found
-- by skipping through it, and each one's due deliveries are the front of its range.
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_due_by_caller ON webhook_deliveries (caller, next_attempt_at)
    WHERE status = 'PENDING';
