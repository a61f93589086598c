//! The raw-SQL baseline: the same work as jobq, written as the plain sqlx
//! statements anyone would write, so every jobq figure can be read as a
//! fraction of what PostgreSQL itself does on this machine. No jobq code runs
//! here; the statements work on jobq's own `jobq_jobs` table.

/// One job inserted, autocommit, no notification.
pub const INSERT_ONE: &str = "INSERT INTO jobq_jobs (kind, queue, args, max_attempts)
     VALUES ('noop', 'bench', $1::jsonb, 1)";

/// One job inserted and its queue notified (jobq's channel), autocommit.
pub const INSERT_ONE_NOTIFY: &str = "WITH ins AS (
         INSERT INTO jobq_jobs (kind, queue, args, max_attempts)
         VALUES ('noop', 'bench', $1::jsonb, 1)
         RETURNING queue)
     SELECT pg_notify('jobq_insert', queue) FROM ins";

/// Many jobs inserted by one statement from an array of arguments.
pub const INSERT_MANY: &str = "INSERT INTO jobq_jobs (kind, queue, args, max_attempts)
     SELECT 'noop', 'bench', a::jsonb, 1 FROM unnest($1::text[]) AS a
     RETURNING id";

/// Claims up to `$1` waiting jobs, skipping rows other clients hold.
pub const CLAIM: &str = "WITH c AS (
         SELECT id FROM jobq_jobs
         WHERE state = 'available' AND queue = 'bench' AND kind = 'noop'
         ORDER BY priority, scheduled_at, id
         LIMIT $1
         FOR UPDATE SKIP LOCKED)
     UPDATE jobq_jobs AS j
     SET state = 'running', attempt = j.attempt + 1, attempted_at = now(), attempted_by = $2
     FROM c WHERE j.id = c.id
     RETURNING j.id, j.args::text";

/// Marks claimed jobs completed.
pub const COMPLETE: &str = "UPDATE jobq_jobs SET state = 'completed', finalized_at = now()
     WHERE id = ANY($1) AND state = 'running'";

/// Finished jobs for the history-scale figure: `$1` completed `noop` rows
/// made by one statement.
pub const HISTORY: &str = "INSERT INTO jobq_jobs
         (kind, queue, args, state, attempt, max_attempts, scheduled_at, created_at,
          attempted_at, finalized_at, attempted_by)
     SELECT 'noop', 'bench', '{\"n\":0}'::jsonb, 'completed', 1, 1, t, t, t, t, 0
     FROM (SELECT now() - interval '30 days' AS t) AS x, generate_series(1, $1::bigint)";

/// The raw baseline's own notification channel (spelled out in
/// [`INSERT_ONE_NOTIFY_ID`] too).
pub const RAW_CHANNEL: &str = "jobq_bench_raw";

/// One job inserted and announced on the baseline's own channel with its id,
/// autocommit; returns the id (the latency baseline's enqueue).
pub const INSERT_ONE_NOTIFY_ID: &str = "WITH ins AS (
         INSERT INTO jobq_jobs (kind, queue, args, max_attempts)
         VALUES ('noop', 'bench', $1::jsonb, 1)
         RETURNING id)
     SELECT ins.id FROM ins, LATERAL (SELECT pg_notify('jobq_bench_raw', ins.id::text)) AS n";
