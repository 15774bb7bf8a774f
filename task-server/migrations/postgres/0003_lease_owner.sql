-- Who holds a lease: the token subject of the worker that claimed it (lease_worker is its
-- worker id). Heartbeats and answers must come from both.
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
