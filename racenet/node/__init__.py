"""The provider's node: engines, RPC, and (later) the API server and workers."""
