-- jobq schema, version 5: hardening against bad input and faults.
--
-- Sections below are filled by the hardening work (issue: one bad job must
-- never stop the others).

-- == Results and error history ==

-- Appends `entry` to a job's error history, keeping the first entry and the
-- last 20: 21 at most, so a job that fails thousands of times (given that
-- many attempts, or cancelled and interrupted again and again) keeps a
-- bounded row. The first failure often says the
-- most; the last ones say what happens now. Each entry's message is capped
-- by the worker (8 KiB), so a row's history stays under about 170 kB.
-- A history that is not an array (written by hand) is kept as its first
-- element rather than lost.
CREATE FUNCTION jobq_push_error(errors jsonb, entry jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN errors IS NULL THEN jsonb_build_array(entry)
        WHEN jsonb_typeof(errors) <> 'array' THEN jsonb_build_array(errors, entry)
        WHEN jsonb_array_length(errors) < 21 THEN errors || jsonb_build_array(entry)
        ELSE jsonb_build_array(errors -> 0)
            || (SELECT jsonb_agg(e ORDER BY i)
                FROM jsonb_array_elements(errors) WITH ORDINALITY AS t(e, i)
                WHERE i > jsonb_array_length(errors) - 19)
            || jsonb_build_array(entry)
    END
$$;

-- == Claims, unique keys, leases ==
