-- Moves a schedule past the tick it fired, only if no one else did. $1 id, $2 the tick fired,
-- $3 the next tick, $4 the task the tick submitted (NULL: none could be).
UPDATE schedules SET next_at = $3, fired = fired + (CASE WHEN $4::uuid IS NULL THEN 0 ELSE 1 END),
       last_task = COALESCE($4, last_task)
WHERE id = $1 AND next_at = $2
