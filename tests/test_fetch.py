"""Tests for kakashi.fetch against a real yt-dlp and a real HTTP server on 127.0.0.1.

No mocks: a threaded ``http.server`` serves a temporary folder holding a real
video, and yt-dlp's generic extractor downloads from it or expands an RSS feed
of enclosures (the playlist format yt-dlp's generic extractor reads offline,
see ``GenericIE._extract_rss`` in ``yt_dlp/extractor/generic.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import imageio_ffmpeg
import pytest

from conftest import DEMO_VIDEO, Site, closed_port, write_feed
from kakashi.errors import FetchError, KakashiError
from kakashi.fetch import (
    PlaylistEntry,
    download_video,
    list_playlist,
    read_playlist_tsv,
    write_playlist_tsv,
)

DANCER = DEMO_VIDEO
DANCER_SECS = 62.88

FAST = {"retries": 0, "socket_timeout": 5.0}


def test_download_direct_video(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out" / "s01.video"
    result = download_video(site.url("a.avi"), out, **FAST)
    assert result == out
    assert out.is_file()
    assert out.stat().st_size == DANCER.stat().st_size
    _frames, secs = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert secs == pytest.approx(DANCER_SECS, abs=0.5)
    # Only the final file remains: the temporary download folder is gone.
    assert sorted(p.name for p in out.parent.iterdir()) == ["s01.video"]


def test_download_replaces_existing_file(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "s02.video"
    out.write_bytes(b"stale")
    download_video(site.url("b.avi"), out, max_height=480, **FAST)
    assert out.stat().st_size == DANCER.stat().st_size


def test_list_playlist_rss(site: Site, tmp_path: Path) -> None:
    feed = write_feed(
        site,
        [
            ("First\tdance", site.url("a.avi"), "guid-1"),  # guid: yt-dlp smuggles it
            ("Second dance", site.url("b.avi"), None),
            ("Third dance", "c.avi", None),  # relative: yt-dlp leaves it as is
        ],
    )
    entries = list_playlist(feed, **FAST)
    assert [e.index for e in entries] == [1, 2, 3]
    assert [e.url for e in entries] == [site.url("a.avi"), site.url("b.avi"), site.url("c.avi")]
    assert all(isinstance(e, PlaylistEntry) for e in entries)
    assert entries[0].title == "First\tdance"
    assert entries[1].title == "Second dance"
    assert entries[0].entry_id == "guid-1"
    assert entries[2].entry_id == "c"

    out = tmp_path / "pl-001.video"
    download_video(entries[0].url, out, **FAST)
    assert out.stat().st_size == DANCER.stat().st_size


def test_list_playlist_rejects_single_video(site: Site) -> None:
    url = site.url("a.avi")
    with pytest.raises(FetchError, match="not a playlist") as info:
        list_playlist(url, **FAST)
    assert url in str(info.value)


def test_list_playlist_rejects_empty_feed(site: Site) -> None:
    feed = write_feed(site, [])
    with pytest.raises(FetchError) as info:
        list_playlist(feed, **FAST)
    assert feed in str(info.value)


def test_download_refuses_playlist(site: Site, tmp_path: Path) -> None:
    feed = write_feed(site, [("One", site.url("a.avi"), None), ("Two", site.url("b.avi"), None)])
    out = tmp_path / "x.video"
    with pytest.raises(FetchError, match="playlist") as info:
        download_video(feed, out, **FAST)
    assert feed in str(info.value)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]


def test_download_404_raises(site: Site, tmp_path: Path) -> None:
    url = site.url("missing.avi")
    out = tmp_path / "missing.video"
    with pytest.raises(FetchError) as info:
        download_video(url, out, **FAST)
    msg = str(info.value)
    assert url in msg
    assert "sources sheet" in msg
    assert isinstance(info.value, KakashiError)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]


def test_download_closed_port_raises(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/video.mp4"
    out = tmp_path / "closed.video"
    with pytest.raises(FetchError) as info:
        download_video(url, out, **FAST)
    assert url in str(info.value)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_list_playlist_closed_port_raises() -> None:
    url = f"http://127.0.0.1:{closed_port()}/feed.xml"
    with pytest.raises(FetchError) as info:
        list_playlist(url, **FAST)
    assert url in str(info.value)


def test_playlist_tsv_round_trip(tmp_path: Path) -> None:
    entries = [
        PlaylistEntry(1, "http://127.0.0.1:1/a.avi", "Tab\there", "a"),
        PlaylistEntry(2, "http://127.0.0.1:1/b.avi", "Line\nbreak\r\nand  spaces ", "b"),
        PlaylistEntry(12, "http://127.0.0.1:1/c.avi", "", "c"),
    ]
    path = tmp_path / "lists" / "pl.tsv"
    write_playlist_tsv(entries, path, "pl")
    assert path.read_text(encoding="utf-8").splitlines()[0] == "seq\tindex\turl\ttitle"
    rows = read_playlist_tsv(path)
    assert rows == [
        {"seq": "pl-001", "index": 1, "url": "http://127.0.0.1:1/a.avi", "title": "Tab here"},
        {
            "seq": "pl-002",
            "index": 2,
            "url": "http://127.0.0.1:1/b.avi",
            "title": "Line break and spaces",
        },
        {"seq": "pl-012", "index": 12, "url": "http://127.0.0.1:1/c.avi", "title": ""},
    ]
    # Atomic write: no temporary file is left next to the result.
    assert sorted(p.name for p in path.parent.iterdir()) == ["pl.tsv"]
    # Rewriting replaces the file.
    write_playlist_tsv(entries[:1], path, "pl")
    assert [r["seq"] for r in read_playlist_tsv(path)] == ["pl-001"]


def test_read_playlist_tsv_rejects_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("a\tb\n", encoding="utf-8")
    with pytest.raises(FetchError, match=re.escape(str(path))):
        read_playlist_tsv(path)
