"""The community registry: its file, its loading, the lookups over it, and who may sign in."""
