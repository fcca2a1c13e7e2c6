"""OpenID Connect relying party of the admin console's sign-in (Authlib)."""
