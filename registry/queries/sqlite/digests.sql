SELECT name, version, sha256 FROM versions
