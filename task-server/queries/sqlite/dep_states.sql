-- ?1 task ids (JSON array): the tasks some waiting tasks wait for, each once, as they are now (a
-- missing one was deleted). Read once per task, however many wait for it (a fan-out's root).
SELECT id AS dep, state, answer, error FROM tasks WHERE id IN (SELECT value FROM json_each(?1))
