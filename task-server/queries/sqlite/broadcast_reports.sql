-- What processors reported of broadcast ?1, in the order they applied it.
SELECT worker_id, applied_at, instances, error FROM broadcast_acks WHERE broadcast = ?1
ORDER BY applied_at, worker_id
