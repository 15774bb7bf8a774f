SELECT id, request_hash, state FROM tasks WHERE owner = $1 AND idempotency_key = $2
