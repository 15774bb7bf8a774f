SELECT package, version, function, req_gpus > 0 AS gpu, leased_at, cost_by, cost0, cost1, cost2
FROM tasks WHERE state = 'leased'
