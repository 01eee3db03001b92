"""Incremental detokenization and stop strings, request validation, and gathering an event stream (no model)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from racenet.ml.backend import FinishEvent, GenerationEvent, GenerationRequest, TokenEvent, Usage, collect
from racenet.ml.errors import InvalidRequestError
from racenet.ml.text import TextAssembler

# A toy byte-level vocabulary: some tokens are single bytes of a multi-byte UTF-8 character.
VOCAB: dict[int, bytes] = {
    0: b"Hello",
    1: b" wor",
    2: b"ld",
    3: b"!",
    4: "é".encode()[:1],
    5: "é".encode()[1:],
    6: b"\n",
}


def decode(ids: Sequence[int]) -> str:
    return b"".join(VOCAB[i] for i in ids).decode("utf-8", errors="replace")


def run(ids: Sequence[int], stop: Sequence[str] = ()) -> tuple[list[str], str, bool]:
    assembler = TextAssembler(decode, stop)
    deltas = []
    for token in ids:
        deltas.append(assembler.add(token))
        if assembler.stopped:
            break
    return deltas, assembler.flush(), assembler.stopped


def test_deltas_concatenate_to_the_text() -> None:
    deltas, rest, stopped = run([0, 1, 2, 3])
    assert deltas == ["Hello", " wor", "ld", "!"]
    assert (rest, stopped) == ("", False)


def test_split_utf8_character_is_held_until_complete() -> None:
    deltas, rest, _ = run([0, 4, 5, 3])
    assert deltas == ["Hello", "", "é", "!"]
    assert rest == ""


def test_incomplete_character_at_the_end_is_flushed() -> None:
    deltas, rest, _ = run([0, 4])
    assert deltas == ["Hello", ""]
    assert rest == "\ufffd"


def test_stop_string_cuts_before_it_and_stops() -> None:
    deltas, rest, stopped = run([0, 1, 2, 3], stop=["wor"])
    assert "".join(deltas) + rest == "Hello "
    assert stopped


def test_stop_string_across_tokens_is_held_then_cut() -> None:
    deltas, rest, stopped = run([0, 1, 2, 3, 6], stop=["world!"])
    assert deltas == ["Hello", " ", "", ""]
    assert stopped and rest == ""


def test_held_prefix_released_when_the_stop_does_not_follow() -> None:
    deltas, rest, stopped = run([0, 1, 3], stop=["world"])
    assert deltas == ["Hello", " ", "wor!"]
    assert not stopped and rest == ""


def test_held_prefix_released_at_the_end() -> None:
    deltas, rest, stopped = run([0, 1], stop=["world"])
    assert "".join(deltas) == "Hello "
    assert rest == "wor" and not stopped


def test_earliest_of_several_stops_wins() -> None:
    deltas, _, stopped = run([0, 1, 2, 3], stop=["!", "o w"])
    assert "".join(deltas) == "Hell"
    assert stopped


def request(**changes: object) -> GenerationRequest:
    fields: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **changes}
    return GenerationRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"messages": []},
        {"messages": [{"role": "wizard", "content": "hi"}]},
        {"messages": [{"role": "user", "content": None}]},
        {"max_tokens": 0},
        {"max_tokens": True},
        {"temperature": -0.1},
        {"temperature": 2.5},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_logprobs": 21},
        {"top_logprobs": -1},
        {"stop": ("",)},
        {"stop": ("a", "b", "c", "d", "e")},
    ],
)
def test_bad_requests_are_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidRequestError):
        request(**changes)


def test_good_request_keeps_its_fields() -> None:
    r = request(max_tokens=5, temperature=0.0, top_p=0.5, seed=3, stop=("x",), top_logprobs=20)
    assert (r.max_tokens, r.temperature, r.top_p, r.seed, r.stop, r.top_logprobs) == (5, 0.0, 0.5, 3, ("x",), 20)


def test_collect_gathers_text_tokens_and_finish() -> None:
    events: list[GenerationEvent] = [
        TokenEvent("Hel", 1, "Hel", -0.5),
        TokenEvent("", 2, "l", -0.25),
        FinishEvent("length", Usage(4, 2), text="lo"),
    ]
    completion = collect(events)
    assert completion.text == "Hello"
    assert completion.token_ids == [1, 2]
    assert (completion.finish_reason, completion.usage.total_tokens) == ("length", 6)
    with pytest.raises(ValueError, match="FinishEvent"):
        collect(events[:2])
