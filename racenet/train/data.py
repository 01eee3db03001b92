"""Training text and the data indices of every step, recomputable by anyone who knows the job.

Sources (nothing from a hub): the Debian packages `bible-kjv` (the King James text, stored compressed in
`/usr/lib/bible.data` and read through the package's own `bible` program) and `fortunes` (the plain-text
cookie files in `/usr/share/games/fortunes`), or any text file a job names. A corpus is the UTF-8 bytes of the
text; its SHA-256 is the dataset hash a job records. The last `VAL_FRACTION` of the bytes is held out for
evaluation; the rest is split into `shards` contiguous, equal ranges, one per job slot.

The batch of step `step` of slot `shard` is `batch_size` window starts drawn uniformly from that slot's range by a
generator seeded with SHA-256("racenet/train/data/v1", job seed, shard, shards, step): a validator recomputes the
exact indices of any segment from public job parameters, and a participant cannot choose easy data.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

FORTUNES_DIR = Path("/usr/share/games/fortunes")
BIBLE_COMMAND = ("bible", "-l0", "gen1:1-rev22:21")
"""The whole Bible, one verse a line (`-l0`: no wrapping); about 4.3 MB in 0.2 s."""
DEBIAN_PACKAGES = {"bible-kjv": "bible-kjv", "fortunes": "fortunes"}
"""Source name → the Debian package that provides it (`make install` installs both)."""
SUBPROCESS_TIMEOUT_S = 60.0
VAL_FRACTION = 0.05
DOMAIN = b"racenet/train/data/v1"


class DataUnavailableError(RuntimeError):
    """A named source is not installed on this machine."""


def bible_text() -> str:
    """The King James Bible as plain text, from the `bible-kjv` package."""
    if shutil.which(BIBLE_COMMAND[0]) is None:
        raise DataUnavailableError("the `bible` program is missing: apt-get install bible-kjv (or `make install`)")
    out = subprocess.run(BIBLE_COMMAND, capture_output=True, check=True, timeout=SUBPROCESS_TIMEOUT_S)
    return out.stdout.decode("utf-8")


def fortune_files() -> list[Path]:
    """The cookie files of `fortunes` in name order (index `.dat` files and `.u8` symlinks left out)."""
    if not FORTUNES_DIR.is_dir():
        raise DataUnavailableError(f"{FORTUNES_DIR} is missing: apt-get install fortunes (or `make install`)")
    return sorted(
        p for p in FORTUNES_DIR.iterdir() if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8")
    )


def fortunes_text() -> str:
    """All fortunes as one text (files in name order)."""
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in fortune_files())


def source_available(name: str) -> bool:
    """Whether the Debian source `name` is installed here."""
    if name == "bible-kjv":
        return shutil.which(BIBLE_COMMAND[0]) is not None
    if name == "fortunes":
        return FORTUNES_DIR.is_dir()
    raise ValueError(f"unknown source {name!r}")


@cache
def load_text(source: str) -> str:
    """The text of `source`: "bible-kjv", "fortunes", or a file path."""
    if source == "bible-kjv":
        return bible_text()
    if source == "fortunes":
        return fortunes_text()
    return Path(source).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Corpus:
    """A text as bytes (the byte-level GPT's tokens), split into training and held-out parts."""

    tokens: torch.Tensor
    """All bytes as int64 token ids."""
    digest: str
    """SHA-256 of the bytes: the dataset hash a job names."""

    @classmethod
    def from_text(cls, text: str) -> Corpus:
        raw = text.encode("utf-8")
        return cls(torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(torch.int64), hashlib.sha256(raw).hexdigest())

    @classmethod
    def load(cls, source: str) -> Corpus:
        return cls.from_text(load_text(source))

    @property
    def train_end(self) -> int:
        """First byte of the held-out part."""
        return int(len(self.tokens) * (1 - VAL_FRACTION))

    def shard_range(self, shard: int, shards: int) -> tuple[int, int]:
        """The [lo, hi) byte range of job slot `shard` of `shards` inside the training part."""
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} outside 0..{shards - 1}")
        end = self.train_end
        return end * shard // shards, end * (shard + 1) // shards

    def batch(self, starts: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-byte targets of the windows starting at `starts` (shape [batch, block_size] each)."""
        offsets = starts.unsqueeze(1) + torch.arange(block_size + 1)
        windows = self.tokens[offsets]
        return windows[:, :-1], windows[:, 1:]

    def eval_starts(self, block_size: int, batches: int, batch_size: int) -> torch.Tensor:
        """Fixed, evenly spaced window starts in the held-out part, shape [batches, batch_size]."""
        lo, hi = self.train_end, len(self.tokens) - block_size - 1
        return torch.linspace(lo, hi, batches * batch_size).to(torch.int64).view(batches, batch_size)


def step_seed(seed: int, shard: int, shards: int, step: int) -> int:
    """The generator seed of one step's batch (a hash, so neighbouring steps and slots are unrelated)."""
    h = hashlib.sha256(DOMAIN + b"".join(v.to_bytes(8, "big", signed=True) for v in (seed, shard, shards, step)))
    return int.from_bytes(h.digest()[:8], "big") >> 1


def batch_starts(
    corpus: Corpus, seed: int, shard: int, shards: int, step: int, batch_size: int, block_size: int
) -> torch.Tensor:
    """Window starts (int64, shape [batch_size]) of step `step` of slot `shard`: a pure function of its arguments."""
    lo, hi = corpus.shard_range(shard, shards)
    span = hi - lo - block_size - 1
    if span <= 0:
        raise ValueError(f"shard {shard}/{shards} holds {hi - lo} bytes, too few for windows of {block_size}")
    gen = torch.Generator().manual_seed(step_seed(seed, shard, shards, step))
    return lo + torch.randint(0, span, (batch_size,), generator=gen)


def segment_indices(
    corpus: Corpus, seed: int, shard: int, shards: int, first_step: int, steps: int, batch_size: int, block_size: int
) -> torch.Tensor:
    """The data indices of a segment of `steps` steps from `first_step`: shape [steps, batch_size]."""
    rows = [
        batch_starts(corpus, seed, shard, shards, s, batch_size, block_size)
        for s in range(first_step, first_step + steps)
    ]
    return torch.stack(rows)
