"""The writer lock: a second writer of the same folder is refused while the first holds it."""
import multiprocessing as mp
import os

from medsearch.errors import MedsearchError
from medsearch.storage.lock import WriterLock


def _try_lock(path, q):
    try:
        with WriterLock(path):
            q.put("got it")
    except MedsearchError as exc:
        q.put(str(exc))


def test_second_writer_is_refused(tmp_path):
    with WriterLock(tmp_path):
        q = mp.get_context("fork").Queue()
        p = mp.get_context("fork").Process(target=_try_lock, args=(tmp_path, q))
        p.start()
        p.join(10)
        assert "another medsearch process" in q.get(timeout=5)
    with WriterLock(tmp_path):  # released, so it can be taken again
        pass



def test_the_lock_file_names_the_holder(tmp_path):
    with WriterLock(tmp_path) as lock:
        assert lock.path.read_text() == str(os.getpid())
