UPDATE versions SET yanked = $3 WHERE name = $1 AND version = $2
