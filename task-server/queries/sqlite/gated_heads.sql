-- The first ?2 gated tasks of cap ?1 (as a function's cap and as a concurrency key), with their
-- place in claim order (rows::GatedRow; the caller merges the two lists).
SELECT * FROM (SELECT seq, priority, fair_tag, cap_fn, cap_key FROM tasks
               WHERE state = 'queued' AND gated = 1 AND cap_fn = ?1
               ORDER BY priority DESC, fair_tag, seq LIMIT ?2)
UNION ALL
SELECT * FROM (SELECT seq, priority, fair_tag, cap_fn, cap_key FROM tasks
               WHERE state = 'queued' AND gated = 1 AND cap_key = ?1
               ORDER BY priority DESC, fair_tag, seq LIMIT ?2)
