"""Reading a set of photos that a person brings, safely, accounting for every file.

What it reads: a folder of class folders (`<root>/<dish>/*.jpg`), Food-101's own layout (`images/<dish>/*.jpg`
beside `meta/`), a CSV of `path,label` (paths relative to the CSV), loose photos (no label), or a zip of any of
these. A zip from a stranger is untrusted: entries with absolute paths or `..`, symbolic links, archives inside the
archive, and anything past the limits are refused per file with the reason; a zip whose inflated size or compression
ratio is over a limit is refused whole before anything is inflated; nothing is written outside the folder given.
"""

from __future__ import annotations

import csv
import io
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ARCHIVES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst"}
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic", ".heif"}


@dataclass(frozen=True)
class Limits:
    """What one upload may hold; said to the user before and after the upload (`words`)."""

    max_photos: int = 2000
    max_bytes: int = 200_000_000  # the photos, inflated
    max_file_bytes: int = 25_000_000  # one photo
    max_ratio: float = 200.0  # inflated / compressed size of one entry: JPEGs barely compress, a bomb is ~1000x
    max_entries: int = 10_000  # entries of a zip, counted before anything is read

    def words(self) -> str:
        return (
            f"at most {self.max_photos:,} photos and {self.max_bytes / 1e6:.0f} MB an upload "
            f"({self.max_file_bytes / 1e6:.0f} MB a photo)"
        )


class UploadError(ValueError):
    """The upload as a whole cannot be read (a zip bomb, a broken zip, too many entries); the message says why."""


@dataclass
class Photo:
    path: Path  # a local file
    name: str  # as the user named it (the path inside their zip or folder)
    label: str | None  # as given (folder name or CSV), not yet matched to a dish


@dataclass
class Collected:
    """Every file of an upload: the photos to predict, and the files refused with the reason."""

    photos: list[Photo] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)  # {"file", "reason"}

    def refuse(self, name: str, reason: str) -> None:
        self.refused.append({"file": name, "reason": reason})


def collect(source: Path, workdir: Path, limits: Limits = Limits()) -> Collected:
    """Every file of `source` (a folder, a zip or a CSV), zips inflated safely under `workdir`."""
    source = Path(source)
    if source.is_dir():
        return collect_folder(source, limits)
    if source.suffix.lower() == ".csv":
        return collect_csv(source, source.parent, limits)
    if zipfile.is_zipfile(source):
        found = Collected()
        root = unzip(source, workdir, limits, found)
        return collect_folder(root, limits, found)
    raise UploadError(f"{source.name}: not a folder, a zip or a CSV of path,label")


def collect_many(files: list[Path], workdir: Path, limits: Limits = Limits()) -> Collected:
    """Several uploaded files at once (the app's "many photos"): zips and CSVs read as above, photos unlabelled."""
    found = Collected()
    for f in files:
        f = Path(f)
        if zipfile.is_zipfile(f) or f.suffix.lower() == ".csv":
            more = collect(f, workdir / f"upload-{len(found.photos) + len(found.refused)}", limits)
            found.photos += more.photos
            found.refused += more.refused
        else:
            found.photos.append(Photo(f, f.name, None))
    return cap(found, limits)


def unzip(source: Path, workdir: Path, limits: Limits, found: Collected) -> Path:
    """The zip's safe entries written under `workdir/files`; refused entries noted in `found`."""
    try:
        zf = zipfile.ZipFile(source)
    except zipfile.BadZipFile as e:
        raise UploadError(f"{source.name} is not a readable zip ({e})") from None
    with zf:
        infos = zf.infolist()
        check_bomb(infos, limits)
        root = (workdir / "files").resolve()
        root.mkdir(parents=True, exist_ok=True)
        for info in infos:
            if info.is_dir():
                continue
            reason = entry_problem(info, limits)
            if reason:
                found.refuse(info.filename, reason)
                continue
            target = (root / PurePosixPath(info.filename)).resolve()
            if root not in target.parents:  # belt and braces: entry_problem already refused such names
                found.refuse(info.filename, "its path points outside the upload")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if not copy_bounded(zf, info, target, limits.max_file_bytes):
                found.refuse(info.filename, "it inflates past its declared size, or is damaged")
    return root


def check_bomb(infos: list[zipfile.ZipInfo], limits: Limits) -> None:
    """Refuse the whole zip, before inflating anything, when its headers announce more than the limits allow."""
    if len(infos) > limits.max_entries:
        raise UploadError(f"the zip has {len(infos):,} entries; the limit is {limits.max_entries:,}")
    total = sum(i.file_size for i in infos)
    if total > limits.max_bytes:
        raise UploadError(f"the zip inflates to {total / 1e6:,.0f} MB; the limit is {limits.max_bytes / 1e6:.0f} MB")
    for i in infos:
        if i.file_size > 1_000_000 and i.file_size > limits.max_ratio * max(i.compress_size, 1):
            raise UploadError(
                f"{i.filename} would inflate {i.file_size / max(i.compress_size, 1):,.0f} times (a zip bomb?); "
                f"photos barely compress, and the limit is {limits.max_ratio:.0f} times"
            )


def entry_problem(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    """Why a zip entry is refused, or None."""
    name = PurePosixPath(info.filename.replace("\\", "/"))
    if name.is_absolute() or ".." in name.parts or (name.parts and ":" in name.parts[0]):
        return "its path points outside the upload (absolute or with ..)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link, not a photo"
    if name.suffix.lower() in ARCHIVES:
        return "an archive inside the archive: unpack it first"
    if "__MACOSX" in name.parts or name.name.startswith("._") or name.name == ".DS_Store":
        return "macOS metadata, not a photo"
    if info.file_size == 0:
        return "an empty file"
    if info.file_size > limits.max_file_bytes:
        return f"{info.file_size / 1e6:.0f} MB; the limit is {limits.max_file_bytes / 1e6:.0f} MB a photo"
    return None


def copy_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int) -> bool:
    """Inflate one entry in chunks, stopping at its declared size (a header can lie); False if it ran over."""
    written, ok = 0, True
    try:
        with zf.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > min(info.file_size, limit):
                    ok = False
                    break
                dst.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError):  # zipfile stops at the declared size: the CRC then fails
        ok = False
    if not ok:
        target.unlink(missing_ok=True)
    return ok


def collect_folder(root: Path, limits: Limits, found: Collected | None = None) -> Collected:
    """A folder's files: with a CSV at its top, the CSV's labels; else class folders (or Food-101's images/)."""
    found = found or Collected()
    root = unwrap(root)
    csvs = sorted(root.glob("*.csv"))
    if csvs:
        listed = collect_csv(csvs[0], root, limits)
        found.photos += listed.photos
        found.refused += listed.refused
        seen = {p.path.resolve() for p in listed.photos} | {c.resolve() for c in csvs[:1]}
        for f in sorted(p for p in root.rglob("*") if p.is_file() and p.resolve() not in seen):
            found.refuse(str(f.relative_to(root)), f"not listed in {csvs[0].name}")
        return cap(found, limits)
    base = root / "images" if (root / "images").is_dir() and (root / "meta").is_dir() else root
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(base) if base in f.parents else None
        if rel is None:  # Food-101's meta/ and license: not photos, said so
            found.refuse(str(f.relative_to(root)), "not a photo of the set (outside images/)")
        else:
            label = rel.parts[0] if len(rel.parts) > 1 else None
            found.photos.append(Photo(f, str(f.relative_to(root)), label))
    return cap(found, limits)


def unwrap(root: Path) -> Path:
    """A zip that holds one folder holding everything (how most zips are made) is read from inside that folder."""
    entries = [p for p in root.iterdir() if p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return unwrap(entries[0])
    return root


def collect_csv(csv_path: Path, root: Path, limits: Limits) -> Collected:
    """A CSV of path,label (a header row; label may be empty): each path, relative to `root`, must stay inside it."""
    found = Collected()
    text = csv_path.read_bytes()[:20_000_000].decode("utf-8-sig", errors="replace")
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and "path" not in rows[0]:
        raise UploadError(f"{csv_path.name} needs a header row with a 'path' column (and 'label')")
    base = root.resolve()
    for row in rows:
        rel = (row.get("path") or "").strip()
        target = (base / rel).resolve()
        if not rel or base not in target.parents:
            found.refuse(rel or "(empty path)", f"{csv_path.name}: the path points outside the upload")
        elif not target.is_file():
            found.refuse(rel, f"{csv_path.name} lists it, but the file is not there")
        else:
            found.photos.append(Photo(target, rel, (row.get("label") or "").strip() or None))
    return found


def cap(found: Collected, limits: Limits) -> Collected:
    """Keep the first `max_photos` photos and at most `max_bytes` of them; the rest are refused, said why."""
    kept, total = [], 0
    for p in found.photos:
        size = p.path.stat().st_size
        if len(kept) >= limits.max_photos:
            found.refuse(p.name, f"past the limit of {limits.max_photos:,} photos an upload")
        elif total + size > limits.max_bytes:
            found.refuse(p.name, f"past the limit of {limits.max_bytes / 1e6:.0f} MB an upload")
        else:
            kept.append(p)
            total += size
    found.photos = kept
    return found
