"""Edits of encoded bytes, for fuzzing the decoders: up to a few bytes set, inserted or
deleted."""

from __future__ import annotations

from hypothesis import strategies as st


def byte_edits(min_size: int = 0) -> st.SearchStrategy[list[tuple[str, int, bytes]]]:
    """Up to 4 edits of an encoded record: set, insert or delete a few bytes somewhere."""
    return st.lists(
        st.tuples(
            st.sampled_from(["set", "insert", "delete"]),
            st.integers(0, 10_000),
            st.binary(min_size=1, max_size=4),
        ),
        min_size=min_size,
        max_size=4,
    )


def mutate(data: bytes, edits: list[tuple[str, int, bytes]], cut: int | None = None) -> bytes:
    """`data` with `edits` applied (positions wrap around its length), then cut at `cut`."""
    out = bytearray(data)
    for op, at, value in edits:
        at %= len(out) + 1
        if op == "set":
            out[at : at + len(value)] = value
        elif op == "insert":
            out[at:at] = value
        else:
            del out[at : at + len(value)]
    return bytes(out if cut is None else out[:cut])
