-- ?1 owner. Bytes of the owner's files (the writer serialises uploads: no lock needed).
SELECT COALESCE(SUM(size), 0) FROM files WHERE owner = ?1
