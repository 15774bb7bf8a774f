SELECT package, version, function, count(*) AS n FROM tasks WHERE state = 'queued'
GROUP BY package, version, function
