-- $1 owner. Bytes of the owner's files; inside a transaction it holds the owner's upload lock
-- until the commit, so two replicas cannot both fit an upload into the same room.
WITH l AS (SELECT pg_advisory_xact_lock(hashtextextended('crpc-files:' || $1, 0)))
SELECT COALESCE((SELECT SUM(size) FROM files WHERE owner = $1), 0)::BIGINT FROM l
