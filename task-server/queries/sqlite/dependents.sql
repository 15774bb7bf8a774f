-- ?1 tasks that just finished (JSON array of ids). The waiting tasks that wait for any of them.
SELECT DISTINCT d.task FROM task_deps d JOIN tasks t ON t.id = d.task
WHERE d.dep IN (SELECT value FROM json_each(?1)) AND t.state = 'waiting'
