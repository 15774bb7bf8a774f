-- $1 task ids (JSON array). Every task each of them waits for, as it is now (state NULL: deleted).
SELECT d.task, d.dep, t.state, t.answer::text AS answer, t.error::text AS error
FROM task_deps d LEFT JOIN tasks t ON t.id = d.dep
WHERE d.task = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid))
