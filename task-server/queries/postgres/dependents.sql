-- $1 tasks that just finished (JSON array of ids). The waiting tasks that wait for any of them
-- and for nothing unfinished any more (no open edge left: edges close when their task
-- finishes, migration 0014, one probe of task_deps_open each), with what settling them needs.
SELECT t.id, t.package, t.version, t.function, t.args::text AS args, t.kwargs::text AS kwargs,
       t.cost_by, t.cost_at::text AS cost_at, t.owner, t.memoize, t.depends_on::text AS depends_on
FROM tasks t
WHERE t.id IN (SELECT d.task FROM task_deps d
               WHERE d.dep = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid)))
  AND t.state = 'waiting'
  AND NOT EXISTS (SELECT 1 FROM task_deps o WHERE o.task = t.id AND NOT o.done)
