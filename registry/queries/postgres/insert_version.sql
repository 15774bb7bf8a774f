-- $1 name, $2 version, $3-$5 major, minor, patch, $6 sha256, $7 size, $8 signature,
-- $9 manifest (JSON), $10 publisher, $11 now. Versions are immutable: an existing one stays.
INSERT INTO versions (name, version, major, minor, patch, sha256, size, signature, yanked, manifest,
                      publisher, published_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9, $10, $11) ON CONFLICT (name, version) DO NOTHING
