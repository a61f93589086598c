-- jobq-bench dashboard: rows $1 to $2 of a history of $3 jobs that ends at
-- $4 (the fill's "now"), oldest first, so ids grow with created_at as they do
-- when jobs are enqueued. Over 30 days: about 230 jobs a minute at 10
-- million rows. Every choice comes from a hash of the row's number, so two
-- fills of one size hold the same jobs.
--
-- A third of the newest 60,000 jobs (4 hours) are unfinished (available
-- 50 %, scheduled 35 %, retryable 15 %), and the newest 50 running; the
-- others completed (97 %), discarded (2 %, with their 3 failed attempts) or
-- cancelled (1 %); 2 % of completed jobs failed once first. A
-- `nightly_rollup` job in 1,000 is a cron tick, with its key. Queues default 45 %, email 25 %,
-- webhooks 15 %, reports 10 %, billing 4 %, exports 1 %; 12 kinds; args hold
-- a user_id among 100,000, so `{"user_id": N}` matches about 100 jobs.
INSERT INTO jobq_jobs (kind, queue, args, state, priority, attempt, max_attempts,
                       scheduled_at, created_at, attempted_at, finalized_at, attempted_by,
                       errors, unique_key, unique_states)
SELECT k.kind, q.queue, a.args, s.state, 0,
       CASE s.state WHEN 'available' THEN 0 WHEN 'scheduled' THEN 0
                    WHEN 'discarded' THEN 3 WHEN 'retryable' THEN 1 + h.f % 2
                    ELSE 1 + (h.f < 20)::int END,
       3,
       CASE s.state WHEN 'scheduled' THEN t.created + (3600 + h.t % 82800) * interval '1 second'
                    WHEN 'retryable' THEN $4::timestamptz + (h.t % 3600) * interval '1 second'
                    ELSE t.created END,
       t.created,
       CASE WHEN s.state IN ('available', 'scheduled') THEN NULL
            ELSE t.created + (h.t % 900) * interval '1 millisecond' END,
       CASE WHEN s.state IN ('completed', 'discarded', 'cancelled')
            THEN t.created + (50 + h.t % 5000) * interval '1 millisecond' END,
       CASE WHEN s.state IN ('available', 'scheduled') THEN NULL ELSE 1 + h.t % 4 END,
       CASE WHEN s.state = 'discarded' OR s.state = 'retryable'
                 OR (s.state = 'completed' AND h.f < 20)
            THEN (SELECT jsonb_agg(jsonb_build_object(
                     'attempt', n, 'at', t.created + n * interval '2 seconds',
                     'started_at', t.created + n * interval '2 seconds' - interval '300 milliseconds',
                     'kind', CASE WHEN h.e % 5 = 0 THEN 'timeout' ELSE 'error' END,
                     'worker', 1 + h.t % 4,
                     'error', (ARRAY['connection refused (os error 111)',
                                     'attempt timed out after 30s',
                                     'HTTP 502 Bad Gateway from https://hooks.example.com/in',
                                     'card declined: insufficient_funds',
                                     'deadlock detected'])[1 + h.e % 5]
                                 || ' (user ' || a.user_id || ')'))
                  FROM generate_series(1, CASE s.state WHEN 'discarded' THEN 3
                                                       WHEN 'retryable' THEN 1 + h.f % 2
                                                       ELSE 1 END) AS n)
            ELSE '[]'::jsonb END,
       CASE WHEN h.k = 1 THEN 'nightly_rollup:cron:' || g.i END,
       CASE WHEN h.k = 1 THEN 255 END
FROM generate_series($1::bigint, $2::bigint) AS g(i)
CROSS JOIN LATERAL (
    SELECT (hashint8extended(g.i, 1) & 9223372036854775807) % 100 AS q,
           (hashint8extended(g.i, 2) & 9223372036854775807) % 1000 AS k,
           (hashint8extended(g.i, 3) & 9223372036854775807) % 100000 AS u,
           (hashint8extended(g.i, 4) & 9223372036854775807) % 1000 AS f,
           (hashint8extended(g.i, 5) & 9223372036854775807) AS t,
           (hashint8extended(g.i, 6) & 9223372036854775807) % 1000 AS e,
           $3::bigint - g.i AS back
) AS h
CROSS JOIN LATERAL (
    SELECT $4::timestamptz - ((h.back)::float8 / $3::bigint) * interval '30 days' AS created
) AS t
CROSS JOIN LATERAL (
    SELECT CASE WHEN h.q < 45 THEN 'default' WHEN h.q < 70 THEN 'email'
                WHEN h.q < 85 THEN 'webhooks' WHEN h.q < 95 THEN 'reports'
                WHEN h.q < 99 THEN 'billing' ELSE 'exports' END AS queue
) AS q
CROSS JOIN LATERAL (
    SELECT CASE q.queue
        WHEN 'default' THEN (ARRAY['process_order', 'sync_inventory', 'resize_image'])[1 + h.k % 3]
        WHEN 'email' THEN (ARRAY['send_welcome_email', 'send_receipt', 'send_digest'])[1 + h.k % 3]
        WHEN 'webhooks' THEN 'deliver_webhook'
        WHEN 'reports' THEN (ARRAY['build_report', 'nightly_rollup'])[1 + h.k % 2]
        WHEN 'billing' THEN (ARRAY['charge_card', 'refund_payment'])[1 + h.k % 2]
        ELSE 'export_csv' END AS kind
) AS k
CROSS JOIN LATERAL (
    SELECT 1 + h.u AS user_id,
           jsonb_build_object('user_id', 1 + h.u, 'order_id', g.i,
                              'ref', md5(g.i::text), 'locale', (ARRAY['en', 'fr', 'de'])[1 + h.k % 3])
               AS args
) AS a
CROSS JOIN LATERAL (
    SELECT (CASE
        WHEN h.back < 50 THEN 'running'
        WHEN h.back < 60000 AND h.f < 330 THEN CASE WHEN h.f < 165 THEN 'available'
                                                    WHEN h.f < 280 THEN 'scheduled'
                                                    ELSE 'retryable' END
        WHEN h.f < 970 THEN 'completed'
        WHEN h.f < 990 THEN 'discarded'
        ELSE 'cancelled' END)::jobq_state AS state
) AS s
