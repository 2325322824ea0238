"""Authentication: hashed personal access tokens, argon2 passwords, the login route."""
