-- jobq schema, version 15: each worker publishes the retention its pruner
-- deletes with, so that `jobq prune --dry-run` (and anything else that does
-- not link the jobs) previews what the workers will really delete.
--
-- {"completed_ms": 86400000, "discarded_ms": 604800000, "cancelled_ms": null}
-- (null: kept for ever); the column is null for a process that prunes
-- nothing (a test's drain).
ALTER TABLE jobq_workers ADD COLUMN retention jsonb;
