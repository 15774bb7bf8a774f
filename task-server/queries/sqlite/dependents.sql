-- ?1 tasks that just finished (JSON array of ids). The waiting tasks that wait for any of them
-- and for nothing unfinished any more (no open edge left: edges close when their task
-- finishes, migration 0014, one probe of task_deps_open each), with what settling them needs.
SELECT t.id, t.package, t.version, t.function, t.args, t.kwargs, t.cost_by, t.cost_at, t.owner,
       t.memoize, t.depends_on FROM tasks t
WHERE t.id IN (SELECT d.task FROM task_deps d WHERE d.dep IN (SELECT value FROM json_each(?1)))
  AND t.state = 'waiting'
  AND NOT EXISTS (SELECT 1 FROM task_deps o INDEXED BY task_deps_open WHERE o.task = t.id AND o.done = 0)
