-- Claims a package name for its first publisher: $1 name, $2 publisher, $3 now.
INSERT INTO packages (name, created_by, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING
