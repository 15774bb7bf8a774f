-- $1 batch (NULL: every batch and none), $2 limit. Waiting tasks in queue order, with what they
-- wait for (the estimate's critical path).
SELECT id, package, version, function, depends_on::text AS depends_on FROM tasks
WHERE state = 'waiting' AND ($1::uuid IS NULL OR batch_id = $1) ORDER BY seq LIMIT $2
