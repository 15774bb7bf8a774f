-- ?1 task ids (JSON array). Those still waiting, with what settling them needs.
SELECT id, package, version, function, args, kwargs, cost_by, cost_at, owner, memoize, depends_on
FROM tasks WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'waiting'
