DELETE FROM owners WHERE name = ?1 AND owner = ?2
