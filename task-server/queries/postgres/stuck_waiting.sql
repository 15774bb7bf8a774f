-- $1 limit. Waiting tasks none of whose dependencies is unfinished: a crash between an answer's
-- commit and the settling of its dependents leaves these; the reaper settles them.
SELECT t.id FROM tasks t WHERE t.state = 'waiting' AND NOT EXISTS (
  SELECT 1 FROM task_deps d JOIN tasks x ON x.id = d.dep
  WHERE d.task = t.id AND x.state IN ('waiting', 'queued', 'leased'))
ORDER BY t.seq LIMIT $1
