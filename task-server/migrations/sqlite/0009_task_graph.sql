-- Task graphs (issue 17). A task whose arguments refer to other tasks (`{"$ref": id}`) or that
-- runs `after` them is inserted `waiting`, with one edge per task it waits for; it is queued
-- once every one of them succeeded (its references replaced by their answers) and failed with
-- `dependency_failed` when one did not. `has_dependents` marks the tasks some edge points at, so
-- an answer looks for dependents only when there can be some. `cost_at` keeps, for a waiting
-- task, where each cost measure's argument is ([[position, name], …]), to measure the
-- substituted arguments when it is queued.
CREATE TABLE task_deps (
    task TEXT NOT NULL,
    dep  TEXT NOT NULL,
    PRIMARY KEY (task, dep)
) WITHOUT ROWID;
CREATE INDEX task_deps_dep ON task_deps(dep);
CREATE TRIGGER task_deps_gone AFTER DELETE ON tasks BEGIN
  DELETE FROM task_deps WHERE task = old.id;
END;
ALTER TABLE tasks ADD COLUMN has_dependents INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cost_at TEXT;
CREATE INDEX tasks_waiting ON tasks(seq) WHERE state = 'waiting';
CREATE INDEX tasks_batch_index ON tasks(batch_id, batch_index) WHERE batch_id IS NOT NULL;
