-- The first fair_tag of a submit by owner ?1 whose first task has priority ?2: max(the head of
-- that priority's queue, one past the owner's last unstarted tag) (migration 0011; PostgreSQL
-- computes the same inside insert_tasks.sql).
SELECT max(coalesce((SELECT fair_tag FROM tasks WHERE state = 'queued' AND priority = ?2
                     ORDER BY priority DESC, fair_tag, seq LIMIT 1), 0),
           coalesce((SELECT fair_tag + 1 FROM tasks WHERE owner = ?1 AND state IN ('waiting', 'queued')
                     ORDER BY fair_tag DESC LIMIT 1), 0))
