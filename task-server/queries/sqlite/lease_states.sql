-- The lease columns of tasks whose answers did not apply. ?1 ids (JSON array).
SELECT id, state, lease_epoch, answered_epoch, lease_worker, lease_owner FROM tasks
WHERE id IN (SELECT value FROM json_each(?1))
