-- $1 task ids (JSON array): the tasks some waiting tasks wait for, each once, as they are now (a
-- missing one was deleted). Read once per task, however many wait for it (a fan-out's root).
SELECT id AS dep, state, answer::text AS answer, error::text AS error FROM tasks
WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid))
