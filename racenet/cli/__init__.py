"""The `racenet` command line."""
