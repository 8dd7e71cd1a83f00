"""``persistence.linelog``: a torn last line is cut before appending; writes are whole."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ultrathink.persistence import linelog
from ultrathink.persistence.linelog import open_append, write_all


@pytest.mark.parametrize(
    ("before", "kept"),
    [
        (b"", b""),
        (b"a\nb\n", b"a\nb\n"),  # complete: untouched
        (b'a\nb\n{"torn', b"a\nb\n"),  # the write a process died in
        (b"no newline at all", b""),
    ],
)
def test_a_torn_last_line_is_cut_before_the_next_line(
    tmp_path: Path, before: bytes, kept: bytes
) -> None:
    path = tmp_path / "deep" / "log.ndjson"
    path.parent.mkdir()
    path.write_bytes(before)
    with open_append(path) as log:
        log.append(b"next\n")
    assert path.read_bytes() == kept + b"next\n"


def test_a_missing_log_and_its_folder_are_made(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "log.ndjson"
    with open_append(path) as log:
        log.append(b"x\n")
    assert path.read_bytes() == b"x\n"


def test_the_last_newline_is_found_beyond_one_read_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(linelog, "_CHUNK", 7)  # the scan backwards crosses several chunks
    path = tmp_path / "log"
    path.write_bytes(b"first line\n" + b"t" * 40)
    with open_append(path) as log:
        log.append(b"second\n")
    assert path.read_bytes() == b"first line\nsecond\n"


class _Short:
    """A file whose every write takes at most 3 bytes (as a write near a full disk may)."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, view: memoryview) -> int:
        self.data += bytes(view[:3])
        return min(3, len(view))


def test_write_all_writes_every_byte_through_short_writes() -> None:
    short = _Short()
    write_all(short, b"0123456789\n")  # type: ignore[arg-type]
    assert short.data == b"0123456789\n"


def test_a_write_that_takes_nothing_is_an_error() -> None:
    class _Stuck:
        def write(self, view: memoryview) -> int:
            return 0

    with pytest.raises(OSError, match="took no bytes"):
        write_all(_Stuck(), b"x\n")  # type: ignore[arg-type]


def test_the_writeback_starts_on_its_own_thread_for_whole_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = linelog._START_WRITEBACK
    if real is None:
        pytest.skip("no sync_file_range here (not Linux)")
    page = linelog._PAGE
    calls: list[tuple[int, int, int, str]] = []
    called = threading.Semaphore(0)

    def start_writeback(fd: int, offset: int, nbytes: int, flags: int) -> int:
        calls.append((fd, offset, nbytes, threading.current_thread().name))
        called.release()
        return real(fd, offset, nbytes, flags)  # the system call itself still runs

    monkeypatch.setattr(linelog, "_START_WRITEBACK", start_writeback)
    path = tmp_path / "log.ndjson"
    path.write_bytes(b"old\n")
    line = b"x" * (page - 1) + b"\n"  # one page a line
    with open_append(path, writeback_every=page) as log:
        log.append(b"12345\n")  # under the threshold: nothing started
        assert calls == []
        log.append(line)  # past it: the first whole page, from the start of the file
        assert called.acquire(timeout=60)
        log.append(line)  # the next whole page; the partial last page is left to the writer
        assert called.acquire(timeout=60)
        fd = log._file.fileno()
        thread = log._thread
        assert thread is not None and thread.is_alive()
    assert calls == [(fd, 0, page, "linelog-writeback"), (fd, page, page, "linelog-writeback")]
    assert not thread.is_alive()  # close stops it
    assert path.read_bytes() == b"old\n12345\n" + line + line


def test_a_log_that_never_reached_the_threshold_starts_no_thread(tmp_path: Path) -> None:
    log = open_append(tmp_path / "log", writeback_every=1 << 20)
    log.append(b"x\n")
    assert log._thread is None
    log.close()
    log.close()  # idempotent
