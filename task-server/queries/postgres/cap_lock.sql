-- Serialises gate passes across replicas for the rest of the transaction (migration 0013).
SELECT pg_advisory_xact_lock(2202200013)::text
