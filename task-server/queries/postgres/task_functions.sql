-- $1 JSON array of ids: each existing task's function and state.
SELECT id, package, version, function, state FROM tasks
WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid))
