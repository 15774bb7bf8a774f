-- ?1 JSON array of ids: each existing task's function and state.
SELECT id, package, version, function, state FROM tasks WHERE id IN (SELECT value FROM json_each(?1))
