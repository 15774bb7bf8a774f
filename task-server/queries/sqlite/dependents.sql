-- ?1 tasks that just finished (JSON array of ids). The waiting tasks that wait for any of them
-- and for nothing unfinished any more (the others wait on: a fan-in of k tasks is read once,
-- not k times).
SELECT DISTINCT d.task FROM task_deps d JOIN tasks t ON t.id = d.task
WHERE d.dep IN (SELECT value FROM json_each(?1)) AND t.state = 'waiting'
  AND NOT EXISTS (SELECT 1 FROM task_deps o JOIN tasks x ON x.id = o.dep
                  WHERE o.task = d.task AND x.state IN ('waiting', 'queued', 'leased'))
