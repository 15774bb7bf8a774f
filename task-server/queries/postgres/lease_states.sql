-- The lease columns of tasks whose answers did not apply. $1 ids (JSON array).
SELECT id, state, lease_epoch, answered_epoch, lease_worker, lease_owner FROM tasks
WHERE id = ANY(ARRAY(SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb)))
