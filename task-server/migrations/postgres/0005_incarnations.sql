-- A processor's run (its incarnation, a UUIDv7 new at each start) on its sighting and on each
-- lease it takes: when a newer run of a worker id shows up, the leases of the older runs are
-- requeued at once instead of waiting out their TTL. lost_leases counts a task's attempts that
-- ended because their processor stopped or restarted (its final error says so).
ALTER TABLE workers ADD COLUMN incarnation TEXT;
ALTER TABLE tasks ADD COLUMN lease_incarnation TEXT;
ALTER TABLE tasks ADD COLUMN lost_leases BIGINT NOT NULL DEFAULT 0;
