SELECT package, version, function, leased_at FROM tasks WHERE state = 'leased'
