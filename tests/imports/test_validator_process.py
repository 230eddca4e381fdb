"""The validator child's loop, run in-process: runs of rows become chunks of exactly
``batch_size`` rows, whatever the size of the runs it validates at a time."""

from __future__ import annotations

import pytest

from imports.pipeline import validator_process
from imports.pipeline.validator_process import Chunk, _End, _produce


class _Collect(list):
    put = list.append


@pytest.mark.parametrize("batch_size,check_rows", [(700, 500), (3, 500), (500, 500), (7, 2)])
def test_chunks_hold_exactly_batch_size_rows_with_errors_and_blank_lines(
    tmp_path, monkeypatch, batch_size, check_rows
):
    monkeypatch.setattr(validator_process, "CHECK_ROWS", check_rows)
    lines = ["sku,name,price"]
    for i in range(1, 1204):
        lines.append(f"S-{i},Item {i},{'oops' if i % 100 == 0 else '1.25'}")
        if i % 250 == 0:
            lines.append("")  # a blank line: not a row, but it takes a line number
    path = tmp_path / "f.csv"
    path.write_text("\n".join(lines) + "\n")
    out = _Collect()
    _produce(str(path), "f.csv", 1203, batch_size, 42, out)

    assert isinstance(out[-1], _End) and out[-1].error is None and out[-1].crash is None
    chunks: list[Chunk] = out[:-1]
    assert [c.rows for c in chunks[:-1]] == [batch_size] * (len(chunks) - 1)
    assert 0 < chunks[-1].rows <= batch_size
    assert sum(c.rows for c in chunks) == 1203
    numbers = [n for c in chunks for n in c.batch.row_numbers]
    errors = [e.row_number for c in chunks for e in c.errors]
    assert len(numbers) == 1203 - 12 and len(errors) == 12
    # file rows: the header is row 1, and each blank line shifts the rows after it by one
    assert sorted(numbers + errors) == [i + 1 + (i - 1) // 250 for i in range(1, 1204)]
    for chunk in chunks:  # each chunk ends at its last row, products and errors alike
        assert chunk.last_row == max(
            [*chunk.batch.row_numbers, *(e.row_number for e in chunk.errors)]
        )
        assert len(chunk.batch.lines) == len(chunk.batch) == len(chunk.batch.keys)
        assert all(line.startswith("42\tS-") for line in chunk.batch.lines)


def test_automatic_batches_ramp_up_to_a_cap_that_depends_only_on_the_file():
    from itertools import islice

    from imports.pipeline.validator_process import batch_sizes

    narrow = list(islice(batch_sizes(0, file_bytes=130_000_000, total=1_000_000), 7))
    assert narrow == [500, 1000, 2000, 4000, 5000, 5000, 5000]
    # 4 kB rows: at most 4 MiB of file a batch
    wide = list(islice(batch_sizes(0, file_bytes=4_096_000_000, total=1_000_000), 5))
    assert wide == [500, 1000, 1024, 1024, 1024]
    assert list(islice(batch_sizes(70, file_bytes=1, total=1), 3)) == [70, 70, 70]


def test_automatic_batches_are_the_same_cut_on_every_attempt(tmp_path):
    """A retry resumes after the last committed batch: it must cut the same batches."""
    lines = ["sku,name,price", *(f"S-{i},Item {i},1.25" for i in range(1, 20_001))]
    path = tmp_path / "f.csv"
    path.write_text("\n".join(lines) + "\n")
    cuts = []
    for _attempt in range(2):
        out = _Collect()
        _produce(str(path), "f.csv", 20_000, 0, 42, out)
        cuts.append([(c.rows, c.last_row) for c in out[:-1]])
    assert cuts[0] == cuts[1]
    assert [rows for rows, _ in cuts[0]] == [500, 1000, 2000, 4000, 5000, 5000, 2500]


def _guard_late(ready) -> None:
    """A spawned child that, like a validator still importing, reaches its guard only after
    its parent is gone; then it would wait on a full queue forever."""
    import time

    time.sleep(1.0)
    put = validator_process._die_with_parent()
    ready.set()
    while True:  # a put that never fits: only the guard ends this
        put(_FullQueue(), None)


class _FullQueue:
    def put(self, item, timeout=None):
        import queue
        import time

        time.sleep(timeout or 0)
        raise queue.Full


def _spawn_and_vanish(pid_file: str, ready) -> None:
    import os

    child = validator_process._CONTEXT.Process(target=_guard_late, args=(ready,), daemon=False)
    child.start()
    with open(pid_file, "w") as f:
        f.write(str(child.pid))
    os._exit(0)  # a horse SIGKILLed: no cleanup, the child is handed to init


def test_a_validator_whose_parent_died_before_its_guard_ran_exits(tmp_path):
    import os
    import time

    import psutil

    pid_file = tmp_path / "child.pid"
    ready = validator_process._CONTEXT.Event()
    parent = validator_process._CONTEXT.Process(
        target=_spawn_and_vanish, args=(str(pid_file), ready)
    )
    parent.start()
    parent.join(30)
    child = psutil.Process(int(pid_file.read_text()))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not child.is_running() or child.status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    else:
        os.kill(child.pid, 9)
        pytest.fail("the orphaned validator outlived its parent (it read init's pid as its own)")
    assert not ready.is_set(), "the orphan should stop at its guard, before any put"
