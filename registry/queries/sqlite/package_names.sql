SELECT name, count(*) FROM versions GROUP BY name ORDER BY name
