-- ?1 task id. Its owner, state, and the token subject and epoch of its current lease.
SELECT owner, state, lease_owner, lease_epoch FROM tasks WHERE id = ?1
