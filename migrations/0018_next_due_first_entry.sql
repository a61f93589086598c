-- jobq schema, version 18: the limited claim reads the queue's next due
-- time as the first entry of jobq_jobs_due, whatever the statistics.
--
-- A claim that runs without the plain claim before it (a queue with only
-- limited kinds, or with a limit of its own) reads how long until the
-- queue's next future job is due, for the producer's sleep. It read
-- min(scheduled_at), which PostgreSQL may compute two ways as cheap as
-- each other on paper: the first entry of jobq_jobs_due past now(), or an
-- aggregate over every entry past now(). With statistics taken while no
-- job of the queue waited for a future time, it estimated one such job and
-- took the aggregate: with 200,000 jobs scheduled for later, every claim
-- read all of them (4,400 buffers, 55 ms) for the one it needed (5
-- buffers). `ORDER BY scheduled_at LIMIT 1` has one plan that needs no
-- sort, the index's order, and every other plan costs more by a sort: the
-- same answer (null when there is no such job), one entry read. The plain
-- claim (`CLAIM_SQL`) reads it the same way from this version on.
-- Everything else is migration 17's function, unchanged.

CREATE OR REPLACE FUNCTION jobq_claim_limited(
    p_queue text, p_kinds text[], p_name text[], p_field text[], p_concurrency integer[],
    p_rate integer[], p_window_ms bigint[], p_room integer, p_worker bigint,
    p_claim_at timestamptz, p_after_plain boolean)
RETURNS TABLE (id bigint, kind text, args text, attempt integer, lost_attempts integer,
               max_attempts integer, priority smallint, scheduled_at timestamptz,
               promoted bigint, alive boolean, next_due_ms float8, queue_limited boolean,
               held_ms float8)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_promoted bigint;
    v_alive boolean;
    v_paused boolean := false;
    v_qc integer;
    v_qr integer;
    v_qw bigint;
    v_limited boolean;
    v_room integer := p_room;
    v_used bigint;
    v_oldest timestamptz;
    v_held float8;
    v_key integer;
    v_ids bigint[];
    v_rkind text[];
    v_rkey text[];
    v_rroom integer[];
    v_next float8;
    v_pass integer;
    v_scan integer;
    v_pkind text[];
    v_pkey text[];
    v_partitioned boolean;
BEGIN
    -- Due future jobs become available, as the plain claim does, unless
    -- the plain claim just did it for this round.
    IF p_after_plain THEN
        v_promoted := 0;
    ELSE
        WITH p AS (
            UPDATE jobq_jobs SET state = 'available'
            WHERE id IN (
                SELECT j.id FROM jobq_jobs j
                WHERE j.state IN ('scheduled', 'retryable') AND j.queue = p_queue
                  AND j.scheduled_at <= now()
                ORDER BY j.scheduled_at
                LIMIT 1000
                FOR UPDATE SKIP LOCKED)
            RETURNING 1)
        SELECT count(*) INTO v_promoted FROM p;
    END IF;

    v_alive := EXISTS (SELECT 1 FROM jobq_workers w WHERE w.id = p_worker);
    SELECT q.paused_at IS NOT NULL, q.concurrency_limit, q.rate_limit, q.rate_window_ms
        INTO v_paused, v_qc, v_qr, v_qw
        FROM jobq_queues q WHERE q.name = p_queue;
    v_paused := coalesce(v_paused, false);
    v_limited := v_qc IS NOT NULL OR v_qr IS NOT NULL;
    IF NOT p_after_plain THEN
        -- The first one in index order, not min(): see the header.
        SELECT (extract(epoch FROM j.scheduled_at - now()) * 1000)::float8 INTO v_next
            FROM jobq_jobs j
            WHERE j.queue = p_queue AND j.state IN ('scheduled', 'retryable')
              AND j.scheduled_at > now()
            ORDER BY j.scheduled_at
            LIMIT 1;
    END IF;

    IF v_alive AND NOT v_paused AND v_room > 0 THEN
        -- The locks of the limits this claim counts against, in key order so
        -- that two claims never wait for each other in a cycle.
        FOR v_key IN
            SELECT DISTINCT hashtext(s) FROM (
                SELECT ' queue ' || p_queue AS s WHERE v_limited
                UNION ALL
                SELECT n FROM unnest(p_name) AS n WHERE n IS NOT NULL) AS scopes
            ORDER BY 1
        LOOP
            PERFORM pg_advisory_xact_lock(27250, v_key);
        END LOOP;

        -- The queue's own room.
        IF v_qc IS NOT NULL THEN
            v_room := least(v_room, v_qc - (
                SELECT count(*) FROM jobq_jobs j
                WHERE j.state = 'running' AND j.queue = p_queue)::integer);
        END IF;
        IF v_qr IS NOT NULL THEN
            SELECT coalesce(sum(s.n), 0), min(s.at) INTO v_used, v_oldest
                FROM jobq_limit_starts s
                WHERE s.key = ' queue ' || p_queue
                  AND s.at > p_claim_at - v_qw * interval '1 millisecond';
            v_room := least(v_room, v_qr - v_used::integer);
            IF v_used >= v_qr THEN
                v_held := greatest(0, extract(epoch FROM
                    v_oldest + v_qw * interval '1 millisecond' - p_claim_at) * 1000);
            END IF;
        END IF;
        IF v_room <= 0 THEN
            v_held := coalesce(v_held, 0);
        ELSE
          -- Pass 1 reads, of each partitioned kind, the partitions of its
          -- first v_scan waiting jobs; pass 2, made only when pass 1 took
          -- less than the room, reads every partition with waiting jobs. A
          -- kind without a partition field has one partition: both passes
          -- find it with the skip scan, in two descents.
          v_scan := least(4 * v_room + 16, 1000);
          v_partitioned := EXISTS (
              SELECT 1 FROM unnest(p_name, p_field) AS k(name, field)
              WHERE k.name IS NOT NULL AND k.field IS NOT NULL);
          FOR v_pass IN 1..2 LOOP
            -- Every partition with waiting jobs, by a skip scan over
            -- jobq_jobs_limited_waiting: one descent per partition however
            -- many jobs it holds. (`state` as a range: see the header.)
            SELECT array_agg(k.kind), array_agg(p.key) INTO v_pkind, v_pkey
            FROM unnest(p_kinds, p_name, p_field) AS k(kind, name, field)
            CROSS JOIN LATERAL (
                WITH RECURSIVE parts(key) AS (
                    (SELECT j.limit_key FROM jobq_jobs j
                     WHERE j.state >= 'available' AND j.state <= 'available'
                       AND j.queue = p_queue AND j.kind = k.kind
                       AND j.limit_key IS NOT NULL
                     ORDER BY j.limit_key LIMIT 1)
                    UNION ALL
                    SELECT (SELECT j.limit_key FROM jobq_jobs j
                            WHERE j.state >= 'available' AND j.state <= 'available'
                              AND j.queue = p_queue AND j.kind = k.kind
                              AND j.limit_key > parts.key
                            ORDER BY j.limit_key LIMIT 1)
                    FROM parts WHERE parts.key IS NOT NULL)
                SELECT parts.key FROM parts WHERE parts.key IS NOT NULL) AS p
            WHERE k.name IS NOT NULL AND (v_pass = 2 OR k.field IS NULL);
            IF v_pass = 1 AND v_partitioned THEN
                -- The partitions met first in claim order.
                SELECT v_pkind || array_agg(k.kind), v_pkey || array_agg(p.key)
                    INTO v_pkind, v_pkey
                FROM unnest(p_kinds, p_name, p_field) AS k(kind, name, field)
                CROSS JOIN LATERAL (
                    SELECT DISTINCT h.limit_key AS key FROM (
                        SELECT j.limit_key FROM jobq_jobs j
                        WHERE j.state = 'available' AND j.queue = p_queue AND j.kind = k.kind
                        ORDER BY j.priority, j.scheduled_at, j.id
                        LIMIT v_scan) AS h
                    WHERE h.limit_key IS NOT NULL) AS p
                WHERE k.name IS NOT NULL AND k.field IS NOT NULL;
            END IF;

            -- The room each of those partitions has.
            SELECT array_agg(b.kind), array_agg(b.key), array_agg(b.room),
                   min(b.held_ms) FILTER (WHERE b.room <= 0)
                INTO v_rkind, v_rkey, v_rroom, v_held
            FROM (
            SELECT k.kind, p.key,
                   least(
                       CASE WHEN k.conc IS NULL THEN v_room ELSE k.conc - (
                           SELECT count(*) FROM jobq_jobs r
                           WHERE r.state = 'running' AND r.limit_key = p.key)::integer END,
                       CASE WHEN k.rate IS NULL THEN v_room ELSE k.rate - st.used END,
                       v_room),
                   CASE WHEN k.rate IS NOT NULL AND st.used >= k.rate
                        THEN greatest(0, extract(epoch FROM
                            st.oldest + k.win * interval '1 millisecond' - p_claim_at) * 1000)
                        ELSE 0 END
                   AS held_ms
            FROM unnest(v_pkind, v_pkey) AS p(kind, key)
            JOIN unnest(p_kinds, p_name, p_concurrency, p_rate, p_window_ms)
                     AS k(kind, name, conc, rate, win) ON k.kind = p.kind
            CROSS JOIN LATERAL (
                SELECT coalesce(sum(s.n), 0)::integer AS used, min(s.at) AS oldest
                FROM jobq_limit_starts s
                WHERE k.rate IS NOT NULL AND s.key = p.key
                  AND s.at > p_claim_at - k.win * interval '1 millisecond') AS st
            WHERE k.name IS NOT NULL) AS b(kind, key, room, held_ms);

            -- The best jobs within each partition's room, and, when the
            -- queue has a limit, of the kinds without one.
            SELECT array_agg(c.id) INTO v_ids FROM (
                SELECT x.id FROM (
                    SELECT j.id, j.priority, j.scheduled_at
                    FROM unnest(v_rkind, v_rkey, v_rroom) AS r(kind, key, room)
                    CROSS JOIN LATERAL (
                        SELECT j.id, j.priority, j.scheduled_at FROM jobq_jobs j
                        WHERE j.state >= 'available' AND j.state <= 'available'
                          AND j.queue = p_queue AND j.kind = r.kind
                          AND j.limit_key = r.key
                        ORDER BY j.priority, j.scheduled_at, j.id
                        LIMIT r.room
                        FOR UPDATE SKIP LOCKED) AS j
                    WHERE r.room > 0
                    UNION ALL
                    SELECT j.id, j.priority, j.scheduled_at
                    FROM unnest(p_kinds, p_name) AS k(kind, name)
                    CROSS JOIN LATERAL (
                        SELECT j.id, j.priority, j.scheduled_at FROM jobq_jobs j
                        WHERE j.state = 'available' AND j.queue = p_queue AND j.kind = k.kind
                        ORDER BY j.priority, j.scheduled_at, j.id
                        LIMIT v_room
                        FOR UPDATE SKIP LOCKED) AS j
                    WHERE k.name IS NULL) AS x
                ORDER BY x.priority, x.scheduled_at, x.id
                LIMIT v_room) AS c;
            EXIT WHEN NOT v_partitioned OR coalesce(cardinality(v_ids), 0) >= v_room;
          END LOOP;

            IF v_ids IS NOT NULL THEN
                -- Attempts started under rate limits, and the windows' old
                -- rows gone (kept a minute past their window: a claim whose
                -- stamp is a little older still counts them).
                INSERT INTO jobq_limit_starts (key, at, n)
                SELECT j.limit_key, p_claim_at, count(*)
                FROM jobq_jobs j
                JOIN unnest(p_kinds, p_rate) AS k(kind, rate) ON k.kind = j.kind
                WHERE j.id = ANY (v_ids) AND k.rate IS NOT NULL AND j.limit_key IS NOT NULL
                GROUP BY j.limit_key;
                IF v_qr IS NOT NULL THEN
                    INSERT INTO jobq_limit_starts (key, at, n)
                    VALUES (' queue ' || p_queue, p_claim_at, cardinality(v_ids));
                END IF;
            END IF;
            DELETE FROM jobq_limit_starts s
            USING (SELECT r.key, k.win FROM unnest(v_rkind, v_rkey) AS r(kind, key)
                   JOIN unnest(p_kinds, p_window_ms) AS k(kind, win) ON k.kind = r.kind
                   WHERE k.win IS NOT NULL
                   UNION ALL
                   SELECT ' queue ' || p_queue, v_qw WHERE v_qw IS NOT NULL) AS w
            WHERE s.key = w.key
              AND s.at < p_claim_at - w.win * interval '1 millisecond' - interval '1 minute';
        END IF;
    END IF;

    RETURN QUERY
    WITH claimed AS (
        UPDATE jobq_jobs AS j
        SET state = 'running', attempt = j.attempt + 1, attempted_at = p_claim_at,
            attempted_by = p_worker
        WHERE j.id = ANY (coalesce(v_ids, '{}'))
        RETURNING j.id, j.kind, j.args::text AS args, j.attempt, j.lost_attempts,
                  j.max_attempts, j.priority, j.scheduled_at)
    SELECT c.*, v_promoted, v_alive, v_next, v_limited, v_held
    FROM (SELECT 1) AS one LEFT JOIN claimed AS c ON true;
END
$$;
