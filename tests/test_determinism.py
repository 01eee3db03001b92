"""Two App instances fed the same blocks compute the same app hash at every height."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from racenet.chain.app import App
from tests.chain import Chain, app_hashes, genesis_for, key

BLOCKS = 40


def test_same_blocks_same_hashes_in_one_process(tmp_path: Path) -> None:
    a = app_hashes(tmp_path / "a", seed=11, blocks=BLOCKS)
    b = app_hashes(tmp_path / "b", seed=11, blocks=BLOCKS)
    assert a == b
    assert len(set(a)) == BLOCKS, "every block changes the hash chain"


def test_same_hashes_in_another_process_with_other_hash_seed(tmp_path: Path) -> None:
    local = app_hashes(tmp_path / "a", seed=12, blocks=BLOCKS)
    code = (
        "import json, sys, pathlib; from tests.chain import app_hashes;"
        f"print(json.dumps(app_hashes(pathlib.Path(sys.argv[1]), 12, {BLOCKS})))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "b")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).parent.parent,
        timeout=120,
    )
    assert json.loads(out.stdout) == local


def test_different_history_different_hash(tmp_path: Path) -> None:
    assert app_hashes(tmp_path / "a", seed=1, blocks=5) != app_hashes(tmp_path / "b", seed=2, blocks=5)


def test_reopened_app_reports_last_commit(tmp_path: Path) -> None:
    chain = Chain.start(tmp_path, genesis_for([key(1)]))
    for _ in range(3):
        last = chain.block()
    chain.app.close()
    app = App(tmp_path / "app.db")
    assert (app.info().last_block_height, app.info().last_block_app_hash) == (3, last.app_hash)
    assert app.chain_id == "racenet-test"


def test_workload_mixes_accepted_and_rejected_transfers(tmp_path: Path) -> None:
    from tests.chain import random_workload

    keys = [key(n) for n in range(1, 6)]
    chain = Chain.start(tmp_path, genesis_for(keys))
    codes = [r.code for txs in random_workload(11, BLOCKS, keys) for r in chain.decided_block(*txs).tx_results]
    assert codes.count(0) > 20
    assert len(set(codes)) >= 3, "accepted, insufficient funds and wrong sequence all occur"
