"""The local image store: content-addressed blobs and tags under $KILN_HOME/store.

    blobs/sha256/<hex>     kernels, root file systems and manifests, by digest
    tags/<name>/<tag>      "sha256:<hex>" of the image's manifest
    snapshots/<image hex>/<key>  "sha256:<hex>" of a snapshot record (kiln.snapshot): the
                           image's VM saved while running, for one QEMU, accelerator, memory...
    tmp/                   staging for builds (same file system, so renames are atomic)
    lock                   flock(2) held while the store is written

This module is the only one that writes to the store. A blob is hashed while
it is copied to a temporary file, fsynced and renamed to its digest; a tag is
written last, so an interrupted build or pull leaves no image behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

from kiln import atomic
from kiln.errors import StoreError, UsageError
from kiln.manifest import Manifest, SnapshotRecord
from kiln.paths import kiln_home

STALE_AFTER = 24 * 3600  # seconds before prune treats a scratch entry as abandoned
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_verified: dict[Path, tuple[int, int, int, int, int]] = {}  # blobs this process has checked (verify_blob)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Problem:
    """Something wrong in the store (Store.check): what kind, where, and in words."""

    kind: str  # "blob", "tag", "snapshot", "leftover"
    path: Path
    message: str


@dataclass(frozen=True, order=True)
class Ref:
    """An image reference: name[:tag], as Docker spells it."""

    name: str
    tag: str = "latest"

    @classmethod
    def parse(cls, text: str) -> Ref:
        slash = text.rfind("/")
        colon = text.rfind(":")
        name, tag = (text[:colon], text[colon + 1 :]) if colon > slash else (text, "latest")
        if not _NAME.match(name) or not _TAG.match(tag):
            raise UsageError(f"invalid image reference {text!r} (expected name[:tag], e.g. hello-http:latest)")
        return cls(name, tag)

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"


@dataclass(frozen=True)
class Image:
    ref: Ref
    digest: str
    manifest: Manifest


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class Store:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or kiln_home() / "store"
        for d in ("blobs/sha256", "tags", "snapshots", "tmp"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        atomic.sweep(self.root / "tmp")  # what builds and pulls killed with SIGKILL left

    # ---- locking and staging ---------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with atomic.file_lock(self.root / "lock"):
            yield

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A scratch directory on the store's file system, removed afterwards."""
        tmp = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix=f"stage-{atomic.owner()}-"))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ---- blobs --------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise StoreError(f"invalid digest {digest!r}")
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def adopt_file(self, path: Path) -> tuple[str, int]:
        """Move `path` (a file in the store's tmp/, e.g. a snapshot's RAM) into the store by digest,
        without copying it (a sparse file stays sparse); return (digest, size)."""
        digest, size = sha256_file(path), path.stat().st_size
        dest = self.blob_path(digest)
        if dest.is_file():
            path.unlink()
        else:
            os.chmod(path, 0o444)
            atomic.install_file(path, dest)
        return digest, size

    def put_file(self, path: Path) -> tuple[str, int]:
        """Copy `path` into the store by digest; return (digest, size)."""
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix=f"blob-{atomic.owner()}-")
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = "sha256:" + h.hexdigest()
            dest = self.blob_path(digest)
            if dest.is_file():
                os.unlink(tmp)
            else:
                os.chmod(tmp, 0o444)
                atomic.install_file(Path(tmp), dest)
            return digest, size
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        dest = self.blob_path(digest)
        if not dest.is_file():
            atomic.write_bytes(dest, data, mode=0o444)
        return digest

    def verify_blob(self, digest: str, what: str) -> Path:
        """The blob's path, after checking that its content still has its digest.

        A process that checks the same blob again (a summoner restoring a snapshot many times) reads it
        once: the check is remembered with what the file looked like (inode, size, mtime, ctime; any
        write changes ctime, which cannot be set back)."""
        path = self.blob_path(digest)
        try:
            st = path.stat()
        except OSError:
            raise StoreError(f"{what} is missing from the store ({digest})") from None
        seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if _verified.get(path) == seen:
            return path
        actual = sha256_file(path)
        if actual != digest:
            raise StoreError(f"{what} is damaged: its content has digest {actual}, the manifest says {digest}")
        _verified[path] = seen
        return path

    def add_image(self, ref: Ref, parts: list[Path], manifest: Callable[[list[tuple[str, int]]], bytes]) -> str:
        """Add an image as a whole: its parts, then the manifest made from their (digest, size), then
        the tag, under the lock. If anything fails, the blobs this call added are removed again."""
        with self._adding():
            stored = [self.put_file(p) for p in parts]
            digest = self.put_bytes(manifest(stored))
            self.tag(ref, digest)
        return digest

    @contextlib.contextmanager
    def _adding(self) -> Iterator[None]:
        """Hold the lock while a whole (image, snapshot) goes in; if the block fails, remove the blobs
        it added, so that nothing half-added stays behind."""
        blobs = self.root / "blobs" / "sha256"
        with self.lock():
            before = {p.name for p in blobs.iterdir()}
            try:
                yield
            except BaseException:
                for p in blobs.iterdir():
                    if p.name not in before:
                        p.unlink(missing_ok=True)
                raise

    # ---- snapshots ----------------------------------------------------------------
    def _snapshot_index(self, image_digest: str, key: str | None = None) -> Path:
        path = self.root / "snapshots" / self.blob_path(image_digest).name
        return path / key if key else path

    def add_snapshot(
        self, image_digest: str, key: str, parts: list[Path], record: Callable[[list[tuple[str, int]]], bytes]
    ) -> str:
        """Add a snapshot as a whole: its files (moved in), then its record, then the index entry
        (image, key) -> record, under the lock; if anything fails, the blobs this call added go again."""
        with self._adding():
            stored = [self.adopt_file(p) for p in parts]
            digest = self.put_bytes(record(stored))
            atomic.write_bytes(self._snapshot_index(image_digest, key), digest.encode() + b"\n")
        return digest

    def snapshot_refs(self, image_digest: str | None = None) -> list[tuple[str, str, str]]:
        """(image digest, key, record digest) of every snapshot (of one image, if given)."""
        out = []
        top = self.root / "snapshots"
        dirs = [self._snapshot_index(image_digest)] if image_digest else sorted(top.iterdir())
        for d in dirs:
            if not d.is_dir():
                continue
            for entry in sorted(d.iterdir()):
                if not entry.name.startswith("."):
                    out.append(("sha256:" + d.name, entry.name, entry.read_text().strip()))
        return out

    def snapshot(self, record_digest: str) -> SnapshotRecord:
        path = self.verify_blob(record_digest, "a snapshot record")
        return SnapshotRecord.from_json(path.read_bytes(), f"snapshot record {record_digest}")

    def remove_snapshots(self, image_digest: str, key: str | None = None) -> int:
        """Forget the snapshots of an image (or one of them); their blobs go with `prune`."""
        removed = 0
        with self.lock():
            for _, k, _ in self.snapshot_refs(image_digest):
                if key is None or k == key:
                    self._snapshot_index(image_digest, k).unlink(missing_ok=True)
                    removed += 1
            with contextlib.suppress(OSError):
                self._snapshot_index(image_digest).rmdir()
        return removed

    # ---- manifests and tags -------------------------------------------------
    def put_manifest(self, manifest: Manifest) -> str:
        return self.put_bytes(manifest.to_json())

    def read_manifest(self, digest: str, what: str = "manifest") -> Manifest:
        path = self.verify_blob(digest, what)
        return Manifest.from_json(path.read_bytes(), what)

    def received(self, digest: str) -> datetime:
        """When this store first got the blob (an image's manifest: when it was built, pulled or loaded here);
        a blob is written once and never touched again."""
        return datetime.fromtimestamp(self.blob_path(digest).stat().st_mtime, UTC)

    def _tag_path(self, ref: Ref) -> Path:
        return self.root / "tags" / quote(ref.name, safe="") / ref.tag

    def tag(self, ref: Ref, digest: str) -> None:
        if not self.has_blob(digest):
            raise StoreError(f"cannot tag {ref}: no such image {digest}")
        atomic.write_bytes(self._tag_path(ref), digest.encode() + b"\n")

    def refs(self) -> list[tuple[Ref, str]]:
        out = []
        for name_dir in sorted((self.root / "tags").iterdir()):
            for tag_file in sorted(name_dir.iterdir()):
                if tag_file.name.startswith("."):
                    continue
                out.append((Ref(unquote(name_dir.name), tag_file.name), tag_file.read_text().strip()))
        return out

    def resolve(self, text: str) -> tuple[str, Ref | None]:
        """A reference, a full digest or a unique digest prefix -> (digest, ref or None)."""
        hexpart = text.removeprefix("sha256:")
        if re.fullmatch(r"[0-9a-f]{12,64}", hexpart) and not self._tag_path(Ref.parse(text)).is_file():
            matches = sorted({d for _, d in self.refs() if d.split(":", 1)[1].startswith(hexpart)})
            if len(matches) == 1:
                return matches[0], None
            if len(matches) > 1:
                raise StoreError(f"digest prefix {text} is ambiguous")
        ref = Ref.parse(text)
        tag_file = self._tag_path(ref)
        if not tag_file.is_file():
            raise StoreError(f"no such image: {ref} (see `kiln images`, or build it with `kiln build`)")
        return tag_file.read_text().strip(), ref

    def image(self, text: str) -> Image:
        digest, ref = self.resolve(text)
        return Image(ref or Ref(text), digest, self.read_manifest(digest, f"the manifest of {text}"))

    def images(self) -> list[Image]:
        return [Image(ref, digest, self.read_manifest(digest, f"the manifest of {ref}")) for ref, digest in self.refs()]

    def image_by_digest(self, digest: str, name: str) -> Image:
        """An image pinned by its manifest digest (instances keep running what they started with)."""
        return Image(Ref.parse(name), digest, self.read_manifest(digest, f"the manifest of {name} ({digest})"))

    # ---- removing ---------------------------------------------------------------
    def untag(self, text: str) -> str:
        """Remove a tag; return the digest it named. Blobs stay until `prune`."""
        ref = Ref.parse(text)
        path = self._tag_path(ref)
        if not path.is_file():
            raise StoreError(f"no such image: {ref}")
        digest = path.read_text().strip()
        with self.lock():
            path.unlink()
            with contextlib.suppress(OSError):
                path.parent.rmdir()
        return digest

    def discard(self, ref: Ref, digest: str, previous: str | None) -> None:
        """Undo the image `digest` a build just tagged `ref`: the tag goes back to `previous` (or away), and
        the blobs no other tagged image uses are deleted."""
        with self.lock():
            path = self._tag_path(ref)
            if previous is not None:
                atomic.write_bytes(path, (previous + "\n").encode())
            else:
                path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
            others: set[str] = set()
            for _, other in self.refs():
                others |= self.parts(other)
            for blob in self.parts(digest) - others:
                self.blob_path(blob).unlink(missing_ok=True)

    def parts(self, digest: str) -> set[str]:
        """The manifest's digest, the digests of the parts it names, and its snapshots' blobs."""
        try:
            m = self.read_manifest(digest)
        except StoreError:
            return {digest}
        used = {digest, m.kernel.digest, m.rootfs.digest}
        for _, _, record in self.snapshot_refs(digest):
            used.add(record)
            with contextlib.suppress(StoreError):
                snap = self.snapshot(record)
                used |= {snap.state.digest, snap.ram.digest}
        return used

    def prune(self, keep: set[str]) -> list[str]:
        """Delete every blob that no tag and no image digest in `keep` uses, and the snapshots of
        images that are gone; return the blobs that went."""
        with self.lock():
            used: set[str] = set()
            kept = {d for _, d in self.refs()} | keep
            for image, key, _ in self.snapshot_refs():
                if image not in kept:
                    self._snapshot_index(image, key).unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        self._snapshot_index(image).rmdir()
            for digest in kept:
                used |= self.parts(digest)
            removed = []
            for blob in sorted((self.root / "blobs" / "sha256").iterdir()):
                digest = "sha256:" + blob.name
                if digest not in used:
                    blob.unlink()
                    removed.append(digest)
            for stale in (self.root / "tmp").iterdir():  # left by a killed build or pull a day ago or more
                if time.time() - stale.lstat().st_mtime < STALE_AFTER:
                    continue  # perhaps a build or pull in progress
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
            return removed

    def check(self, deep: bool = True) -> list[Problem]:
        """What is wrong in the store (nothing: consistent). Every tag names a manifest that is valid and whose
        parts are there with their digests; with `deep`, every blob's digest is its name; every snapshot
        index entry names a record, its image and its files; nothing in tmp/ was left by a process that is
        gone. `repair` puts each one right."""
        problems: list[Problem] = []
        blobs = self.root / "blobs" / "sha256"
        damaged: set[str] = set()
        if deep:
            for blob in sorted(blobs.iterdir()):
                if blob.name.startswith("."):
                    if atomic.left_by_the_dead(blob.name):
                        problems.append(Problem("leftover", blob, f"a half-written blob: {blob.name}"))
                    continue
                if not re.fullmatch(r"[0-9a-f]{64}", blob.name) or sha256_file(blob) != "sha256:" + blob.name:
                    damaged.add("sha256:" + blob.name)
                    problems.append(Problem("blob", blob, f"blob {blob.name[:12]} does not have its digest"))
        for ref, digest in self.refs():
            tag = self._tag_path(ref)
            try:
                if digest in damaged:
                    raise StoreError(f"the manifest of {ref} is damaged")
                m = self.read_manifest(digest, f"the manifest of {ref}")
                for part, what in ((m.kernel.digest, "kernel"), (m.rootfs.digest, "root file system")):
                    if part in damaged:
                        raise StoreError(f"the {what} of {ref} is damaged")
                    self.verify_blob(part, f"the {what} of {ref}")
            except StoreError as err:
                problems.append(Problem("tag", tag, f"tag {ref}: {err}"))
        for image, key, record in self.snapshot_refs():
            entry = self._snapshot_index(image, key)
            try:
                if not self.has_blob(image):
                    raise StoreError(f"its image {image[:19]} is not in the store")
                snap = self.snapshot(record)
                for part in (snap.state.digest, snap.ram.digest):
                    if part in damaged or not self.has_blob(part):
                        raise StoreError(f"its file {part[:19]} is missing or damaged")
            except StoreError as err:
                problems.append(Problem("snapshot", entry, f"snapshot {image[7:19]}/{key}: {err}"))
        places = [self.root / "tmp", *(self.root / "tags").iterdir(), *(self.root / "snapshots").iterdir()]
        for place in places:
            for entry in sorted(place.iterdir()) if place.is_dir() else []:
                if (place.name == "tmp" or entry.name.startswith(".")) and atomic.left_by_the_dead(entry.name):
                    where = entry.relative_to(self.root)
                    problems.append(Problem("leftover", entry, f"{where}, left by a process that is gone"))
        return problems

    def repair(self, problems: list[Problem]) -> None:
        """Put the problems `check` found right: damaged blobs, and tags and snapshot entries naming what is
        missing or damaged, go (their images are broken: build or pull them again); leftovers go."""
        with self.lock():
            for problem in problems:
                if problem.kind == "leftover" and problem.path.is_dir():
                    shutil.rmtree(problem.path, ignore_errors=True)
                else:
                    problem.path.unlink(missing_ok=True)
                if problem.kind in ("tag", "snapshot"):
                    with contextlib.suppress(OSError):
                        problem.path.parent.rmdir()
