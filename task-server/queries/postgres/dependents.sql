-- $1 tasks that just finished (JSON array of ids). The waiting tasks that wait for any of them.
SELECT DISTINCT d.task FROM task_deps d JOIN tasks t ON t.id = d.task
WHERE d.dep = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid)) AND t.state = 'waiting'
