SELECT package, version, function, req_gpus > 0 AS gpu, leased_at, cost::text AS cost FROM tasks WHERE state = 'leased'
