-- Task graphs: an edge is closed (`done`) in the statement that finishes (or deletes) the task
-- it points at, by trigger, so "does this task still wait for anything" is one probe of
-- task_deps_open instead of a walk over every edge with its task's state: a fan-in of k tasks
-- cost O(k) probes per finishing dependency, O(k²) in all (a 999-way reduce: ~10⁶). An edge to
-- a task that had already finished is inserted closed (link.sql). Existing edges are closed
-- here when their task is no longer unfinished.
ALTER TABLE task_deps ADD COLUMN done INTEGER NOT NULL DEFAULT 0;
UPDATE task_deps SET done = 1
WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = task_deps.dep AND t.state IN ('waiting', 'queued', 'leased'));
CREATE INDEX task_deps_open ON task_deps(task) WHERE done = 0;
CREATE TRIGGER task_deps_close AFTER UPDATE OF state ON tasks
WHEN new.has_dependents AND new.state IN ('succeeded', 'failed', 'cancelled')
BEGIN
  UPDATE task_deps SET done = 1 WHERE dep = new.id AND done = 0;
END;
CREATE TRIGGER task_deps_close_deleted AFTER DELETE ON tasks WHEN old.has_dependents
BEGIN
  UPDATE task_deps SET done = 1 WHERE dep = old.id AND done = 0;
END;
