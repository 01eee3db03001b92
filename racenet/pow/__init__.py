"""The Race (Proof-of-Work 2.0, whitepaper Appendix A), read in this order:

presets     model sizes and calibrated thresholds            (no torch)
rng         race seed -> weights: ChaCha20 counter mode, chunked, bitwise the same everywhere
model       the seeded pre-LN transformer
vectors     node seed, per-nonce input, permutation and mix, targets, output key, distance
race        `build_race(preset, race_seed)`: one race's model, targets and threshold
miner       `Miner(race, public_key).run(seconds, found)`: batched, pipelined, yielding, interruptible
verifier    `verify_nonces(race, public_key, nonces)`: recompute opened nonces
decision    `verdict_table()`: the binomial test behind the chain's verdict table   (no torch)
calibrate   how the thresholds and the honest mismatch rate were measured
"""
