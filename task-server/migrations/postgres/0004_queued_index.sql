-- Queued tasks per owner, for --max-queued-per-owner: the count touches only these entries.
CREATE INDEX tasks_unstarted ON tasks(owner) WHERE state IN ('waiting', 'queued');
