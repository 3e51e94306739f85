"""Atomic writes (cvae._atomic): a file is whole or as it was, with the permissions the umask gives."""

import os


def test_atomic_writes_leave_the_umask_alone_and_follow_it(tmp_path):
    import threading

    from cvae._atomic import atomic_write

    previous = os.umask(0o077)
    try:
        seen, stop = set(), threading.Event()

        def watch():  # the umask, as another thread would meet it, while files are written
            while not stop.is_set():
                mask = os.umask(0o077)
                os.umask(mask)
                seen.add(mask)

        watcher = threading.Thread(target=watch)
        watcher.start()
        for i in range(60):
            atomic_write(tmp_path / f"f{i}", b"x")
        stop.set()
        watcher.join()
        assert seen == {0o077}
        assert {(tmp_path / f"f{i}").stat().st_mode & 0o777 for i in range(60)} == {0o600}
    finally:
        os.umask(previous)
