SELECT name, version, sha256, size, signature, yanked, manifest, publisher, published_at
FROM versions WHERE name = $1 AND version = $2
