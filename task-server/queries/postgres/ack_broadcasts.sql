-- Records that worker $1 applied the broadcasts of $2 (JSON array of task_api::BroadcastApplied);
-- unknown ids and repeats are ignored.
INSERT INTO broadcast_acks (broadcast, worker_id, applied_at, instances, error)
SELECT (a->>'id')::uuid, $1, (a->>'applied_at')::bigint, (a->>'instances')::bigint, a->>'error'
FROM jsonb_array_elements($2::jsonb) AS a
WHERE EXISTS (SELECT 1 FROM broadcasts b WHERE b.id::text = a->>'id')
ON CONFLICT DO NOTHING
