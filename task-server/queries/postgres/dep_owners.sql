-- $1 JSON array of ids: the owner of each that exists (a submit may only wait for its own tasks).
SELECT id, owner FROM tasks WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid))
