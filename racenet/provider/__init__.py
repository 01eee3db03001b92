"""Running a provider on its own machine: `racenet join` prepares a node home for an existing network,
`racenet up` runs and supervises its processes (docs/provider.md)."""
