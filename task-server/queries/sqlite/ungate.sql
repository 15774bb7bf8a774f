-- Lets gated tasks through: ?1 JSON [{seq, at}] (at: their earliest start, a rate's slot).
WITH u AS MATERIALIZED (SELECT j.value ->> 'seq' AS seq, j.value ->> 'at' AS at FROM json_each(?1) AS j)
UPDATE tasks SET gated = 0, available_at = max(tasks.available_at, u.at)
FROM u WHERE tasks.seq = u.seq AND tasks.gated = 1 AND tasks.state = 'queued'
