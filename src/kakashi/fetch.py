"""Download videos and expand playlists with yt-dlp's Python API.

Nothing here goes through a shell: yt-dlp is driven in-process and merges
video and audio with the ffmpeg binary shipped by ``imageio-ffmpeg``.
Every failure is reported as a :class:`kakashi.errors.FetchError` whose
message names the URL and says what the user can do about it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kakashi.errors import FetchError

log = logging.getLogger("kakashi.fetch")

TSV_HEADER = ("seq", "index", "url", "title")

# Files yt-dlp leaves behind while (or after failing at) downloading.
_LEFTOVER_SUFFIXES = (".part", ".ytdl", ".temp", ".tmp")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


@dataclass(frozen=True)
class PlaylistEntry:
    """One video of a playlist: 1-based position, absolute URL, title and id."""

    index: int
    url: str
    title: str
    entry_id: str


class _YtdlpLogger:
    """Forward yt-dlp's messages to the ``kakashi.fetch`` Python logger."""

    def debug(self, msg: str) -> None:
        # yt-dlp routes both its "[debug]" lines and its ordinary screen
        # messages through ``debug``; neither is worth more than DEBUG here.
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        log.warning("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        # The caller gets a FetchError carrying the same message; keep the log quieter.
        log.warning("yt-dlp: %s", msg)


def _ffmpeg_exe() -> str | None:
    """Path of imageio-ffmpeg's ffmpeg binary, or None if it is unavailable."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:
        log.warning("imageio-ffmpeg has no usable ffmpeg (%s); merging may fail", exc)
        return None


def _base_options(retries: int, socket_timeout: float) -> dict[str, Any]:
    """yt-dlp options shared by downloads and playlist expansion."""
    opts: dict[str, Any] = {
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "logger": _YtdlpLogger(),
        "socket_timeout": socket_timeout,
        "retries": retries,
        "fragment_retries": retries,
        "extractor_retries": retries,
        "file_access_retries": 1,
        "restrictfilenames": True,
        "color": {"stdout": "no_color", "stderr": "no_color"},
        "cachedir": False,
    }
    return opts


def _format_selector(max_height: int) -> str:
    # ``<=?`` also accepts formats whose height is unknown (e.g. a direct file link).
    h = int(max_height)
    return f"bv*[height<=?{h}]+ba/b[height<=?{h}]/bv*+ba/b"


def _clean_ytdlp_message(exc: BaseException) -> str:
    text = re.sub(r"^(?:ERROR:\s*)+", "", str(exc).strip())
    text = re.sub(r"\s*\(caused by .*\)$", "", text, flags=re.DOTALL)  # repeats the error
    return text.rstrip(". ") or type(exc).__name__


def _download_error(url: str, exc: BaseException) -> FetchError:
    return FetchError(
        f"Could not download {url}: {_clean_ytdlp_message(exc)}. "
        "Check the URL and your network connection, or download the video by hand "
        "and put its local path in the sources sheet instead of the URL."
    )


def _pick_media_file(tmp_dir: Path, info: dict[str, Any] | None) -> Path:
    """The single finished media file yt-dlp wrote into ``tmp_dir``."""
    for item in (info or {}).get("requested_downloads") or []:
        fp = item.get("filepath")
        if fp and Path(fp).is_file() and Path(fp).parent.resolve() == tmp_dir.resolve():
            return Path(fp)
    files = [
        p for p in tmp_dir.iterdir() if p.is_file() and not p.name.endswith(_LEFTOVER_SUFFIXES)
    ]
    if len(files) != 1:
        names = ", ".join(sorted(p.name for p in files)) or "none"
        raise RuntimeError(f"expected one media file from yt-dlp, found {names}")
    return files[0]


def download_video(
    url: str,
    out_path: Path,
    max_height: int = 720,
    retries: int = 3,
    socket_timeout: float = 30.0,
) -> Path:
    """Download one video (video and audio in one file) from ``url`` to ``out_path``.

    The best format no taller than ``max_height`` is chosen; separate video and
    audio streams are merged with imageio-ffmpeg's ffmpeg. The download happens in
    a temporary folder next to ``out_path`` and the finished file is then renamed
    to exactly ``out_path`` (whatever its container), so ``out_path`` is either
    complete or untouched. Raises :class:`FetchError` on any failure.
    """
    out_path = Path(out_path)
    if max_height < 1:
        raise ValueError(f"max_height must be positive, got {max_height}")
    try:
        import yt_dlp
    except ImportError as exc:  # pragma: no cover - yt-dlp is a hard dependency
        raise FetchError(
            f"Cannot download {url}: yt-dlp is not installed ({exc}). Install kakashi's "
            "dependencies, or download the video by hand and put its local path in the "
            "sources sheet."
        ) from exc

    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    except OSError as exc:
        raise FetchError(
            f"Cannot download {url}: cannot write in {out_path.parent} ({exc}). "
            "Check that the output folder is writable and has free space."
        ) from exc

    opts = _base_options(retries, socket_timeout)
    opts.update(
        {
            "format": _format_selector(max_height),
            "noplaylist": True,
            # A playlist URL is refused below, without resolving all its videos.
            "extract_flat": "in_playlist",
            "paths": {"home": str(tmp_dir), "temp": str(tmp_dir)},
            "outtmpl": {"default": "media.%(ext)s"},
            "overwrites": True,
            "continuedl": False,
            "nopart": False,
            "keepvideo": False,
            "writethumbnail": False,
            "writesubtitles": False,
            "writeinfojson": False,
        }
    )
    ffmpeg = _ffmpeg_exe()
    if ffmpeg:
        opts["ffmpeg_location"] = ffmpeg

    try:
        try:
            with yt_dlp.YoutubeDL(opts) as ydl:
                info = ydl.extract_info(url, download=False)
                if info is None:
                    raise RuntimeError("yt-dlp returned no information")
                if info.get("_type") in ("playlist", "multi_video"):
                    raise FetchError(
                        f"{url} is a playlist, not a single video. List it as a playlist "
                        "in the sources sheet so it is expanded into its videos, or give "
                        "the URL of one video."
                    )
                info = ydl.process_ie_result(info, download=True)
            media = _pick_media_file(tmp_dir, info)
            if media.stat().st_size == 0:
                raise RuntimeError("the downloaded file is empty")
            os.replace(media, out_path)
        except FetchError:
            raise
        except Exception as exc:  # yt-dlp, network, disk or post-processing failure
            raise _download_error(url, exc) from exc
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    log.info("downloaded %s to %s", url, out_path)
    return out_path


def _entry_url(entry: dict[str, Any], base_url: str) -> tuple[str, dict[str, Any]]:
    """Absolute, plain URL of a flat playlist entry (or "") and any data smuggled into it."""
    from yt_dlp.utils import unsmuggle_url

    url, smuggled = unsmuggle_url(str(entry.get("url") or ""), {})
    if urllib.parse.urlparse(url).scheme:
        return url, smuggled or {}
    page = str(entry.get("webpage_url") or "")
    if urllib.parse.urlparse(page).scheme:
        return page, smuggled or {}
    if url and entry.get("ie_key") in (None, "Generic"):
        # e.g. a relative <enclosure url="..."> in an RSS feed
        return urllib.parse.urljoin(base_url, url), smuggled or {}
    return "", {}


def list_playlist(url: str, retries: int = 3, socket_timeout: float = 30.0) -> list[PlaylistEntry]:
    """Expand a playlist URL into its entries, in order, without downloading any video.

    Raises :class:`FetchError` if the URL cannot be read, is not a playlist, or
    has no entries.
    """
    try:
        import yt_dlp
    except ImportError as exc:  # pragma: no cover - yt-dlp is a hard dependency
        raise FetchError(f"Cannot expand playlist {url}: yt-dlp is not installed ({exc}).") from exc

    opts = _base_options(retries, socket_timeout)
    opts.update({"extract_flat": "in_playlist", "noplaylist": False, "skip_download": True})
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=False)
    except Exception as exc:  # yt-dlp or network failure
        raise FetchError(
            f"Could not read the playlist {url}: {_clean_ytdlp_message(exc)}. "
            "Check the URL and your network connection, or download its videos by hand "
            "and list their local paths in the sources sheet."
        ) from exc

    if not info or info.get("_type") not in ("playlist", "multi_video"):
        raise FetchError(
            f"{url} is not a playlist (yt-dlp sees a single video). "
            "List it as a single video in the sources sheet, or check the URL."
        )
    base_url = str(info.get("webpage_url") or url)
    entries: list[PlaylistEntry] = []
    for raw in info.get("entries") or []:
        if not raw:
            continue  # unavailable entries come back as None
        entry_url, smuggled = _entry_url(raw, base_url)
        if urllib.parse.urlparse(entry_url).scheme not in ("http", "https"):
            log.warning("skipping playlist entry without a usable URL in %s: %r", url, raw)
            continue
        entry_id = str(
            raw.get("id")
            or smuggled.get("force_videoid")
            or Path(urllib.parse.urlparse(entry_url).path).stem
            or len(entries) + 1
        )
        title = str(raw.get("title") or entry_id)
        entries.append(
            PlaylistEntry(index=len(entries) + 1, url=entry_url, title=title, entry_id=entry_id)
        )
    if not entries:
        raise FetchError(
            f"The playlist {url} has no downloadable entries. Check the URL (a private or "
            "empty playlist?), or download the videos by hand and list their local paths "
            "in the sources sheet."
        )
    if len(entries) > MAX_PLAYLIST_ENTRIES:
        # Entry ids are ID-001 ... ID-999: three digits keep them within the id length.
        raise FetchError(
            f"The playlist {url} has {len(entries)} entries; one sheet row takes at most "
            f"{MAX_PLAYLIST_ENTRIES}. Split it into several rows (e.g. list the videos "
            "individually), or use a shorter playlist."
        )
    return entries


MAX_PLAYLIST_ENTRIES = 999


def _clean_field(text: str) -> str:
    """Make ``text`` safe for one TSV cell: no tabs, newlines or control characters."""
    return " ".join(_CONTROL_CHARS.sub(" ", str(text)).split())


def write_playlist_tsv(entries: Iterable[PlaylistEntry], path: Path, prefix: str) -> None:
    """Write ``entries`` as a TSV (``seq, index, url, title``) atomically to ``path``.

    ``seq`` is ``f"{prefix}-{index:03d}"``; titles are flattened to one line.
    """
    path = Path(path)
    if _clean_field(prefix) != prefix or not prefix:
        raise ValueError(f"playlist prefix must be non-empty without whitespace: {prefix!r}")
    lines = ["\t".join(TSV_HEADER)]
    for e in entries:
        url = _clean_field(e.url)
        if url != e.url or not url:
            raise ValueError(f"playlist entry {e.index} has an invalid URL: {e.url!r}")
        lines.append(
            "\t".join((f"{prefix}-{e.index:03d}", str(e.index), url, _clean_field(e.title)))
        )
    data = "\n".join(lines) + "\n"

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def read_playlist_tsv(path: Path) -> list[dict]:
    """Read a TSV written by :func:`write_playlist_tsv`.

    Returns one dict per row with keys ``seq`` (str), ``index`` (int), ``url`` and
    ``title`` (str). Raises :class:`FetchError` if the file is malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FetchError(
            f"Cannot read the playlist file {path}: {exc}. Delete it so it is regenerated."
        ) from exc
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != TSV_HEADER:
        raise FetchError(
            f"The playlist file {path} lacks the header {'/'.join(TSV_HEADER)}. "
            "Delete it so it is regenerated."
        )
    rows: list[dict] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(TSV_HEADER) or not cells[1].isdigit():
            raise FetchError(
                f"The playlist file {path} is malformed at line {lineno}. "
                "Delete it so it is regenerated."
            )
        rows.append({"seq": cells[0], "index": int(cells[1]), "url": cells[2], "title": cells[3]})
    return rows
