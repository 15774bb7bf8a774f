-- ?1 tasks that just finished (JSON array of ids). The waiting tasks that wait for any of them
-- and for nothing unfinished any more: no open edge left (edges close when their task
-- finishes, migration 0014), one probe of task_deps_open each.
SELECT DISTINCT d.task FROM task_deps d JOIN tasks t ON t.id = d.task
WHERE d.dep IN (SELECT value FROM json_each(?1)) AND t.state = 'waiting'
  AND NOT EXISTS (SELECT 1 FROM task_deps o INDEXED BY task_deps_open WHERE o.task = d.task AND o.done = 0)
