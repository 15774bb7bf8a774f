-- Unfinished tasks per owner, for --max-queued-per-owner: the count touches only these entries.
CREATE INDEX tasks_unfinished ON tasks(owner) WHERE state IN ('waiting', 'queued', 'leased');
