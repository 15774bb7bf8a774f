-- Records that worker ?1 applied the broadcasts of ?2 (JSON array of task_api::BroadcastApplied);
-- unknown ids and repeats are ignored.
INSERT INTO broadcast_acks (broadcast, worker_id, applied_at, instances, error)
SELECT a.value ->> 'id', ?1, a.value ->> 'applied_at', a.value ->> 'instances', a.value ->> 'error'
FROM json_each(?2) AS a
WHERE EXISTS (SELECT 1 FROM broadcasts b WHERE b.id = a.value ->> 'id')
ON CONFLICT DO NOTHING
