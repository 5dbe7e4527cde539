"""The artifact store contract, run against both back ends: the filesystem and S3 over HTTP
(moto's server mode as the S3 protocol peer, see tests/s3server.py)."""

import errno
import hashlib
import mmap
import os
import signal
from pathlib import Path

import boto3
import pytest
import requests

from releases.checks import slipway_settings
from releases.storage import ArtifactStore, StoreError, get_store
from releases.storage.base import HASH_ASIDE_BYTES, object_key
from releases.storage.filesystem import BLOCK, FilesystemStore, FileWriter
from tests.s3server import PART_BYTES, bucket_keys, open_multipart_uploads

DATA = b"slipway artifact bytes\n" * 1000
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(params=["fs", "s3"])
def store(request, settings, tmp_path) -> ArtifactStore:
    if request.param == "s3":
        request.getfixturevalue("s3_store_settings")
    else:
        settings.SLIPWAY_STORE = "fs"
        settings.ARTIFACT_DIR = tmp_path / "artifacts"
    return get_store()


def stored(store: ArtifactStore) -> list[str]:
    """Everything the store holds, staging included, as keys relative to its root."""
    if store.kind == "fs":
        return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())
    keys = [k.removeprefix(store.prefix) for k in bucket_keys(store.endpoint_url, store.bucket)]
    return keys + [f"(open multipart upload) {k}" for k in open_multipart_uploads(store.endpoint_url, store.bucket)]


def write(store: ArtifactStore, data: bytes, chunk: int = 64 * 1024):
    writer = store.writer()
    for start in range(0, len(data), chunk):
        writer.write(data[start:start + chunk])
    return writer.finish()


def test_an_object_is_staged_then_committed_under_its_sha256(store):
    staged = write(store, DATA)
    assert (staged.sha256, staged.size) == (SHA, len(DATA))
    assert store.exists(SHA) is False
    with store.open_staged(staged) as staged_file:
        staged_file.seek(-5, 2)
        assert staged_file.read() == DATA[-5:]
        staged_file.seek(0)
        assert staged_file.read() == DATA
    assert store.commit(staged) is True
    assert stored(store) == [object_key(SHA)]
    with store.open(SHA) as stream:
        assert stream.read() == DATA
    assert store.local_path(SHA).read_bytes() == DATA
    # The same bytes again make no second object, and their staging is gone.
    assert store.commit(write(store, DATA)) is False
    assert stored(store) == [object_key(SHA)]


def test_an_aborted_or_discarded_object_leaves_nothing(store):
    writer = store.writer()
    writer.write(DATA)
    writer.abort()
    store.discard_staged(write(store, b"checked and refused"))
    assert stored(store) == []


def test_put_file_and_delete(store, tmp_path):
    source = tmp_path / "candidate.onnx"
    source.write_bytes(DATA)
    assert store.put_file(source) == (SHA, len(DATA))
    assert store.exists(SHA) is True
    store.delete(SHA)
    assert store.exists(SHA) is False
    assert stored(store) == []


def test_a_missing_object_is_an_error(store):
    with pytest.raises(StoreError, match=f"no object .*{SHA[:12]}"):
        store.local_path(SHA)
    with pytest.raises(StoreError, match="no object"):
        store.open(SHA)


def test_the_download_url_serves_the_object(store):
    store.commit(write(store, DATA))
    url = store.download_url(SHA, expires_s=60)
    if store.kind == "fs":
        assert url == (store.root / object_key(SHA)).as_uri()
        return
    assert requests.get(url, timeout=10).content == DATA
    unsigned = url.split("?")[0]
    assert requests.get(unsigned, timeout=10).status_code == 403


def test_a_large_object_goes_up_in_parts_and_comes_down_verified(s3_store_settings, settings):
    store = get_store()
    data = bytes(range(256)) * (2 * PART_BYTES // 256) + b"tail" * 100_000  # two full parts and a short one
    staged = write(store, data, chunk=256 * 1024)
    s3 = boto3.client("s3", endpoint_url=store.endpoint_url)
    assert s3.head_object(Bucket=store.bucket, Key=staged.location)["ETag"].endswith('-3"')
    assert store.commit(staged) is True
    sha = hashlib.sha256(data).hexdigest()
    assert stored(store) == [object_key(sha)]
    path = store.local_path(sha)
    assert path == Path(settings.SLIPWAY_CACHE_DIR) / object_key(sha)
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o444


def test_an_interrupted_multipart_upload_is_aborted(s3_store_settings):
    store = get_store()
    writer = store.writer()
    for _ in range(11):
        writer.write(b"x" * 1024 * 1024)
    assert len(writer.parts) + (writer.in_flight is not None) == 2  # sent, or on its way while the next arrives
    assert open_multipart_uploads(store.endpoint_url, store.bucket) == [writer.key]
    writer.abort()
    assert stored(store) == []


def test_a_corrupted_object_is_never_used_by_a_worker(s3_store_settings, settings):
    store = get_store()
    boto3.client("s3", endpoint_url=store.endpoint_url).put_object(Bucket=store.bucket, Key=store.key_for(SHA),
                                                                   Body=b"not the bytes")
    with pytest.raises(StoreError, match=f"has sha256 {hashlib.sha256(b'not the bytes').hexdigest()}"):
        store.local_path(SHA)
    assert [p for p in Path(settings.SLIPWAY_CACHE_DIR).rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(("changes", "problems"), [
    ({"SLIPWAY_STORE": "ftp"}, [("slipway.E003", "SLIPWAY_STORE must be fs or s3, not 'ftp'")]),
    ({"SLIPWAY_STORE": "s3", "SLIPWAY_S3_BUCKET": ""}, [("slipway.E004", "SLIPWAY_STORE=s3 needs SLIPWAY_S3_BUCKET")]),
    ({"SLIPWAY_STORE": "s3", "SLIPWAY_S3_BUCKET": "b", "SLIPWAY_S3_PART_BYTES": 1024},
     [("slipway.E005", "SLIPWAY_S3_PART_BYTES must be at least 5 MiB (S3's smallest part)")]),
    ({"SLIPWAY_STORE": "s3", "SLIPWAY_S3_BUCKET": "b", "SLIPWAY_S3_PART_BYTES": PART_BYTES}, []),
])
def test_store_settings_are_checked_at_start(settings, changes, problems):
    for name, value in changes.items():
        setattr(settings, name, value)
    assert [(p.id, p.msg) for p in slipway_settings(None) if p.id in {"slipway.E003", "slipway.E004",
                                                                       "slipway.E005"}] == problems


def test_a_forked_process_hashes_large_chunks_on_threads_of_its_own(tmp_path):
    """The hashing threads are not inherited through fork (Celery's prefork workers): a child makes its own."""
    store, data = FilesystemStore(tmp_path), b"b" * HASH_ASIDE_BYTES
    writer = store.writer()
    writer.write(data)  # the parent's hashing thread exists now
    writer.abort()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child's exit status is the assertion)
        signal.alarm(20)  # a child waiting forever on a thread it never had is killed, and fails
        child = store.writer()
        child.write(data)
        os._exit(0 if child.finish().sha256 == hashlib.sha256(data).hexdigest() else 1)
    assert os.waitpid(pid, 0)[1] == 0


def direct_io(writer: FileWriter) -> bool:
    """Whether the file store's writer has its file open past the page cache (O_DIRECT, octal 040000)."""
    flags = Path(f"/proc/self/fdinfo/{writer.fd}").read_text().split("flags:")[1].split()[0]
    return bool(int(flags, 8) & os.O_DIRECT)


def test_the_file_store_writes_whole_aligned_blocks_past_the_page_cache(tmp_path):
    """Page-aligned buffers of whole blocks, reused in turn as the reader does, go past the page cache;
    from the first chunk that is not, the file goes through it. The bytes and their sha256 are the same."""
    store = FilesystemStore(tmp_path)
    writer = store.writer()
    if not direct_io(writer):
        writer.abort()
        pytest.skip("this file system has no O_DIRECT")
    buffers = [mmap.mmap(-1, 16 * BLOCK) for _ in range(2)]
    data = os.urandom(5 * 16 * BLOCK + 1000)
    for number, start in enumerate(range(0, 5 * 16 * BLOCK, 16 * BLOCK)):
        buffer = buffers[number % 2]
        buffer[:] = data[start:start + 16 * BLOCK]
        writer.write(memoryview(buffer))
        assert direct_io(writer)
    writer.write(data[-1000:])
    assert not direct_io(writer)
    staged = writer.finish()
    assert (staged.sha256, staged.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert Path(staged.location).read_bytes() == data


def test_a_chunk_anywhere_in_memory_is_stored_as_it_is(tmp_path):
    """Whole blocks at an address a disk may not take directly: written past the page cache or through it."""
    writer = FilesystemStore(tmp_path).writer()
    data = b"\x00" + os.urandom(16 * BLOCK)
    writer.write(memoryview(data)[1:])
    writer.write(memoryview(data)[1:])
    assert Path(writer.finish().location).read_bytes() == data[1:] * 2


def test_an_error_writing_a_chunk_comes_out_of_finish_and_leaves_nothing(tmp_path, monkeypatch):
    writer = FilesystemStore(tmp_path).writer()

    def disk_full(chunk: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "_write", disk_full)
    writer.write(b"x" * HASH_ASIDE_BYTES)  # written on another thread: its error comes with the next call
    with pytest.raises(OSError, match="No space left"):
        writer.finish()
    assert list(tmp_path.rglob("*.part")) == []
