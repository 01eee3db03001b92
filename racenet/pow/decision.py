"""The decision on a proof: a binomial test of how many opened nonces failed to reproduce (no torch needed).

An honest node's appropriate vectors reproduce unless float noise moves one across the threshold, which
happens with probability at most `P_HONEST` per opened nonce (measured, see below). A proof of n = SAMPLE_SIZE
opened nonces of which k fail to reproduce is accepted iff

    P(X >= k | X ~ Binomial(n, P_HONEST)) >= ALPHA

so an honest node is rejected with probability at most ALPHA per proof. A claim of fewer than SAMPLE_SIZE
vectors opens all of them and is accepted only if none fails: one bad nonce among few is no noise worth
tolerating (a one-nonce garbage proof would otherwise pass), at an honest rejection rate of at most
n * P_HONEST (n * 1e-4 at the estimated real noise). The chain applies the integer table this gives,
`verdict_table(SAMPLE_SIZE)`, from its params (`race.Params.verdict_table`); a test keeps the two equal.

A cheater whose fraction f of claimed nonces is fake fails each opened nonce with probability
q = f + (1 - f) * P_HONEST (a fake nonce passes only by luck, 1/difficulty, ignored here) and is caught
with probability P(X > max_mismatches(n) | q).

Measured noise (`race calibrate --noise`, with each output scored against the target its key picks; the
reference is fp32 at batch 256 on 2 threads; "failed / appropriate" over nonce x (permutation, mix) pairs; tiny
4 race seeds x 2048 nonces, small 2 x 1024, paper 1 x 512; the two one-nonce-at-a-time rows cover 32 nonces per
256; an AVX2 machine, where the fp32 variants came out bitwise equal, and bf16 is emulated):

    miner computes as            tiny             small            paper          max |output diff| (paper)
    fp32 batch 64                0 / 2307         0 / 595          0 / 301        0 (bitwise)
    fp32 batch 1 (padded)        0 / 300          0 / 70           0 / 37         0 (bitwise with MIN_BATCH 16)
    fp32 1 thread                0 / 2307         0 / 595          0 / 301        0 (1.1e-5 on AVX-512)
    fp32 small-matrix kernel     0 / 300          0 / 70           0 / 37         0 (1.2e-5 on AVX-512)
    fp64                         0 / 2307         0 / 595          0 / 301        1.2e-5
    bf16                         395 / 2280       100 / 584        92 / 294       1.9e-1
    fp32 miner, bf16 checker     422 / 2307       111 / 595        99 / 301
    rate, bf16                   0.17             0.17             0.31

Every fp32 variant reproduced every appropriate vector. Their output differences (~1e-5 where they differ at
all, the size of the differences between CPU instruction sets) move a distance by ~1e-6 and flip one of the
key's 32-64 signs for about 1e-4 of nonces, against ~1e-2 for bf16, which flips a key sign for 17-26% of nonces:
so fp32 noise should fail about 1e-4 of them. P_HONEST = 1e-3 bounds that with a margin of 10 (and is the
rule-of-three 95% bound of 0 failures in 3000). bf16 fails far more often, so a bf16 miner confirms its
candidates in fp32 before committing (`Miner(..., confirm=fp32 race)`), and misses the nonces whose bf16 key is
wrong; unconfirmed bf16 proofs would be rejected almost always (P(X >= 3 | 32, 0.31) > 0.999 on paper).

With n = SAMPLE_SIZE = 32 opened nonces (the chain's `sample_size`), P_HONEST = 1e-3 and ALPHA = 1e-4 a proof
passes with at most 2 failures: an honest node is rejected with probability <= 1e-4 (5e-9 at the estimated
real noise of 1e-4), and a cheater with a fraction f of fake nonces is caught with probability 0.22 (f = 0.05),
0.64 (f = 0.1), 0.993 (f = 0.25), 1 - 1.2e-7 (f = 0.5) and 1 (f = 1). Small f is hard to catch with 32
openings: opening more nonces, or adding up failures over cycles, raises the power (n = 64: 0.96 at f = 0.1).
"""

from __future__ import annotations

import math

P_HONEST = 1e-3
ALPHA = 1e-4
SAMPLE_SIZE = 32


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed term by term in logs (a cycle's thousands of positions fit)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)

    def term(i: int) -> float:
        return math.exp(log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)

    return math.fsum(term(i) for i in range(k, n + 1))


def max_mismatches(n: int, p_honest: float = P_HONEST, alpha: float = ALPHA) -> int:
    """The largest number of failed nonces out of n that still accepts the proof."""
    k = 0
    while k < n and binomial_tail(k + 1, n, p_honest) >= alpha:
        k += 1
    return k


def verdict_table(sample_size: int = SAMPLE_SIZE) -> tuple[int, ...]:
    """Failures tolerated among n opened nonces, n = 0..sample_size: none below a full sample."""
    return (0,) * sample_size + (max_mismatches(sample_size),)


def detection_power(n: int, fake_fraction: float, p_honest: float = P_HONEST, alpha: float = ALPHA) -> float:
    """Probability that a proof whose fraction `fake_fraction` of nonces is fake is rejected when n are opened."""
    q = fake_fraction + (1.0 - fake_fraction) * p_honest
    return binomial_tail(max_mismatches(n, p_honest, alpha) + 1, n, q)
