SELECT package, version, function, req_gpus > 0 AS gpu, leased_at, cost FROM tasks
WHERE state = 'leased' AND batch_id = ?1
