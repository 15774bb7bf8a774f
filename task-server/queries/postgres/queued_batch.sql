SELECT package, version, function, count(*) AS n FROM tasks WHERE state = 'queued' AND batch_id = $1
GROUP BY package, version, function
