"""Chain modules, each owning its messages, state keys, queries and per-block hooks."""
