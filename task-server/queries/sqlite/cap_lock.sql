-- Serialises gate passes. SQLite: the single writer already runs them one at a time.
SELECT 1
