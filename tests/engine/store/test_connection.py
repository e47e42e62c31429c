"""Connections: transactions that read, then write, while another process writes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from engine.store import connect


def test_a_read_then_write_transaction_waits_for_a_concurrent_writer(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    first, second = connect(path), connect(path)
    first.execute("CREATE TABLE t (x INTEGER)")
    read_done, errors = threading.Event(), []

    def reader_then_writer() -> None:
        try:
            with first.atomic():
                first.execute("SELECT COUNT(*) FROM t").fetchone()
                read_done.set()
                time.sleep(0.3)  # the other writer commits now, with a deferred BEGIN
                first.execute("INSERT INTO t VALUES (1)")
        except Exception as exc:  # pragma: no cover - the failure this test is about
            errors.append(exc)
            read_done.set()

    def other_writer() -> None:
        read_done.wait(5)
        with second.atomic():
            second.execute("INSERT INTO t VALUES (2)")

    threads = [threading.Thread(target=reader_then_writer), threading.Thread(target=other_writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert sorted(r[0] for r in first.execute("SELECT x FROM t").fetchall()) == [1, 2]
