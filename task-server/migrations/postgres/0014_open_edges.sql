-- Task graphs: an edge is closed (`done`) in the statement that finishes (or deletes) the task
-- it points at, by trigger, so "does this task still wait for anything" is one probe of
-- task_deps_open instead of a walk over every edge with its task's state: a fan-in of k tasks
-- cost O(k) probes per finishing dependency, O(k²) in all (a 999-way reduce: ~10⁶). Closing in
-- the finishing transaction also means two replicas settling two last dependencies at once
-- each see the other's edge closed once its answer committed. An edge to a task that had
-- already finished is inserted closed (link.sql). Existing edges are closed here when their
-- task is no longer unfinished.
ALTER TABLE task_deps ADD COLUMN done BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE task_deps SET done = TRUE
WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = task_deps.dep AND t.state IN ('waiting', 'queued', 'leased'));
CREATE INDEX task_deps_open ON task_deps(task) WHERE NOT done;
CREATE FUNCTION crpc_close_edges() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    UPDATE task_deps SET done = TRUE WHERE dep = OLD.id AND NOT done;
  ELSE
    UPDATE task_deps SET done = TRUE WHERE dep = NEW.id AND NOT done;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER task_deps_close AFTER UPDATE OF state ON tasks FOR EACH ROW
WHEN (NEW.has_dependents AND NEW.state IN ('succeeded', 'failed', 'cancelled'))
EXECUTE FUNCTION crpc_close_edges();
CREATE TRIGGER task_deps_close_deleted AFTER DELETE ON tasks FOR EACH ROW
WHEN (OLD.has_dependents)
EXECUTE FUNCTION crpc_close_edges();
