DELETE FROM tasks WHERE id = $1 RETURNING id, state, batch_id
