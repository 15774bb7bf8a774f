SELECT owner FROM owners WHERE name = ?1 ORDER BY owner
