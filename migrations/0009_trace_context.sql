-- jobq schema, version 9: the trace context of a job's enqueue.
--
-- With jobq's `opentelemetry` feature, an enqueue stores the W3C trace
-- context of its span (`{"traceparent": "...", "tracestate": "..."}`), and
-- each run's span links to it. Without the feature nothing writes or reads
-- it: the column stays null, which costs a row nothing (a null takes a bit of
-- the row's null bitmap, no data).
ALTER TABLE jobq_jobs ADD COLUMN trace_context jsonb;
