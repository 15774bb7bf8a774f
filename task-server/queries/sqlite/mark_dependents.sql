-- ?1 JSON array of ids: tasks some waiting task now waits for (their answers look for dependents).
UPDATE tasks SET has_dependents = 1 WHERE id IN (SELECT value FROM json_each(?1)) AND has_dependents = 0
