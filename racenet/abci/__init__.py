"""ABCI 2.0 glue between consensus engines and racenet's state machine.

`server` runs an App behind CometBFT v0.38's socket protocol; `driver` runs it in-process
without CometBFT; `pb` holds protobuf modules generated from the pinned CometBFT release by
`scripts/gen-proto.sh` (not checked in).
"""
