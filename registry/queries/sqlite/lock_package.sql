-- A write to the package row first: concurrent owner removals queue behind it (PostgreSQL
-- row lock; SQLite's single writer), so two of them cannot both leave it without owners.
UPDATE packages SET created_by = created_by WHERE name = ?1
