"""A worker's stdout and stderr as its function's log lines (workers._OutputLines): split as
the bytes come, whatever the chunks, the last line kept at close, no line without end."""

from __future__ import annotations

import asyncio
import logging

import pytest

from wschat.gateway.workers import _OutputLines


def lines_logged(chunks: list[bytes], caplog: pytest.LogCaptureFixture) -> list[str]:
    loop = asyncio.new_event_loop()
    try:
        closed: asyncio.Future[None] = loop.create_future()
        output = _OutputLines("[Fn]", closed)
        with caplog.at_level(logging.INFO, logger="wschat.functions"):
            for chunk in chunks:
                output.data_received(chunk)
            output.connection_lost(None)
        assert closed.done()
    finally:
        loop.close()
    return [r.getMessage() for r in caplog.records if r.name == "wschat.functions"]


def test_lines_split_across_chunks_are_logged_whole(caplog: pytest.LogCaptureFixture) -> None:
    chunks = [b"first li", b"ne\nsecond\nthi", b"rd\r\n", b"\xff broken utf-8\n"]
    assert lines_logged(chunks, caplog) == [
        "[Fn] first line",
        "[Fn] second",
        "[Fn] third",
        "[Fn] \ufffd broken utf-8",
    ]


def test_the_last_line_without_a_newline_is_logged_at_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert lines_logged([b"done\nexiting without newline"], caplog) == [
        "[Fn] done",
        "[Fn] exiting without newline",
    ]


def test_output_that_never_ends_a_line_is_logged_in_pieces(
    caplog: pytest.LogCaptureFixture,
) -> None:
    piece = b"x" * 40_000  # two of them pass MAX_LINE (64 KiB): logged, and a new line begun
    logged = lines_logged([piece, piece, piece], caplog)
    assert [len(line) - len("[Fn] ") for line in logged] == [80_000, 40_000]


def test_nothing_is_decoded_when_function_logs_are_off(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        output = _OutputLines("[Fn]", loop.create_future())
        with caplog.at_level(logging.WARNING, logger="wschat.functions"):
            output.data_received(b"quiet\nquieter\n")
            output.connection_lost(None)
    finally:
        loop.close()
    assert not [r for r in caplog.records if r.name == "wschat.functions"]
