"""Decentralized training, off-chain: a small GPT, Debian training text, DiLoCo workers and proof-of-learning.

`model` (the GPT), `data` (text, shards, recomputable batch indices), `steps` (the job record and the inner step),
`diloco` (workers, the round barrier, checkpoints), `pol` (commitments, verification by re-run, honeypots).
See docs/training.md.
"""
