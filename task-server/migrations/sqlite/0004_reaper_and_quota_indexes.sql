-- Queued tasks per owner, for --max-queued-per-owner: the count touches only these entries.
CREATE INDEX tasks_unstarted ON tasks(owner) WHERE state IN ('waiting', 'queued');
-- The reaper looks for batch records past the result TTL: only the old ones, not every batch.
CREATE INDEX batches_created ON batches(created_at);
