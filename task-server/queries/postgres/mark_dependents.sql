-- $1 JSON array of ids: tasks some waiting task now waits for (their answers look for dependents).
UPDATE tasks SET has_dependents = TRUE
WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid)) AND NOT has_dependents
