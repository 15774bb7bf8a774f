-- Versions exporting function $1 whose yanked flag is $2 (false).
SELECT v.name, v.version, v.sha256, v.size, v.signature, v.yanked, v.manifest, v.publisher, v.published_at
FROM versions v JOIN functions f ON f.name = v.name AND f.version = v.version
WHERE f.function = $1 AND v.yanked = $2
