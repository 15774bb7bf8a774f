-- ?1 task ids (JSON array). Every task each of them waits for, as it is now (state NULL: deleted).
SELECT d.task, d.dep, t.state, t.answer, t.error FROM task_deps d LEFT JOIN tasks t ON t.id = d.dep
WHERE d.task IN (SELECT value FROM json_each(?1))
