-- $1 task ids (JSON array). Those still waiting, with what settling them needs.
SELECT id, package, version, function, args::text AS args, kwargs::text AS kwargs, cost_by,
       cost_at::text AS cost_at, owner, memoize, depends_on::text AS depends_on FROM tasks
WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid)) AND state = 'waiting'
