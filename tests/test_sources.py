"""The sources sheet: every bad row fails at once with a message naming the row."""

from __future__ import annotations

import pytest

from conftest import DEMO, DEMO_VIDEO, write_sheet
from kakashi.errors import SheetError
from kakashi.sources import looks_like_playlist, read_sheet, stable_split


def test_demo_sheet_reads_with_defaults() -> None:
    sheet = read_sheet(DEMO / "sources.tsv")
    assert list(sheet.index) == ["dancer-a", "dancer-b", "dancer-c"]
    assert set(sheet["kind"]) == {"video"}
    assert sheet.loc["dancer-a", "source"] == str(DEMO_VIDEO.resolve())
    assert sheet.loc["dancer-a", "start"] == 0 and sheet.loc["dancer-a", "end"] == 40
    assert sheet.loc["dancer-c", "end"] != sheet.loc["dancer-c", "end"]  # NaN: to the end
    assert list(sheet["split"]) == ["train", "val", "test"]


def test_relative_paths_are_relative_to_the_sheet(tmp_path) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.avi").write_bytes(DEMO_VIDEO.read_bytes()[:100])
    sheet = read_sheet(write_sheet(tmp_path / "s.tsv", [{"id": "a", "source": "videos/a.avi"}]))
    assert sheet.loc["a", "source"] == str((tmp_path / "videos" / "a.avi").resolve())


def test_urls_and_playlists_are_recognised(tmp_path) -> None:
    rows = [
        {"id": "v", "source": "https://www.youtube.com/watch?v=abc&list=PL1"},
        {"id": "p", "source": "https://www.youtube.com/playlist?list=PL1"},
        {"id": "q", "source": "http://127.0.0.1:9/feed.xml", "kind": "playlist", "split": "val"},
    ]
    sheet = read_sheet(write_sheet(tmp_path / "s.tsv", rows))
    assert list(sheet["kind"]) == ["video", "playlist", "playlist"]
    assert sheet.loc["v", "split"] in ("train", "val", "test")
    assert sheet.loc["p", "split"] is None  # each entry gets its own split
    assert sheet.loc["q", "split"] == "val"
    assert looks_like_playlist("https://youtube.com/playlist?list=x")
    assert not looks_like_playlist("https://youtube.com/watch?v=x")


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"id": "a", "source": "{video}", "colour": "red"}], "unknown column(s) 'colour'"),
        (
            [{"id": "a", "source": "{video}"}, {"id": "a", "source": "{video}"}],
            "line 3 (id 'a'): duplicate id 'a', first used on line 2",
        ),
        ([{"id": "a;rm -rf ~", "source": "{video}"}], "line 2 (id 'a;rm -rf ~'): id "),
        ([{"id": "$(touch x)", "source": "{video}"}], "is not a safe file name"),
        ([{"id": "../up", "source": "{video}"}], "is not a safe file name"),
        ([{"id": "a", "source": "{video}", "start": 10, "end": 5}], "end (5.0 s) must be after"),
        ([{"id": "a", "source": "{video}", "start": "soon"}], "start must be a number"),
        ([{"id": "a", "source": "missing.mp4"}], "missing.mp4' does not exist"),
        ([{"id": "a", "source": "{video}", "split": "holdout"}], "line 2 (id 'a'): 'holdout'"),
        ([{"id": "a", "source": "{video}", "kind": "playlist"}], "kind 'playlist' needs a URL"),
        ([{"id": "", "source": "{video}"}], "line 2: 'id' is a required property"),
    ],
)
def test_bad_rows_fail_naming_the_row(tmp_path, rows, expected) -> None:
    for row in rows:
        if row.get("source") == "{video}":
            row["source"] = str(DEMO_VIDEO)
    path = write_sheet(tmp_path / "bad.tsv", rows)
    with pytest.raises(SheetError) as error:
        read_sheet(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_missing_or_empty_sheet(tmp_path) -> None:
    with pytest.raises(SheetError, match="does not exist"):
        read_sheet(tmp_path / "nope.tsv")
    (tmp_path / "empty.tsv").write_text("id\tsource\n")
    with pytest.raises(SheetError, match="has no rows"):
        read_sheet(tmp_path / "empty.tsv")


def test_stable_split_is_deterministic_and_follows_fractions() -> None:
    ids = [f"video-{i}" for i in range(3000)]
    splits = [stable_split(name, 0.1, 0.2) for name in ids]
    assert splits == [stable_split(name, 0.1, 0.2) for name in ids]
    assert 0.08 < splits.count("val") / len(ids) < 0.12
    assert 0.18 < splits.count("test") / len(ids) < 0.22
    with pytest.raises(SheetError):
        stable_split("x", 0.6, 0.6)


def test_style_column_is_optional_lower_cased_and_validated(tmp_path) -> None:
    rows = [
        {"id": "a", "source": str(DEMO_VIDEO), "style": "Waltz"},
        {"id": "b", "source": str(DEMO_VIDEO), "style": "cha-cha"},
        {"id": "c", "source": str(DEMO_VIDEO)},
    ]
    sheet = read_sheet(write_sheet(tmp_path / "s.tsv", rows))
    assert sheet.loc["a", "style"] == "waltz" and sheet.loc["b", "style"] == "cha-cha"
    assert sheet.loc["c", "style"] is None
    # A sheet without the column keeps working, with no style anywhere.
    plain = read_sheet(write_sheet(tmp_path / "p.tsv", [{"id": "a", "source": str(DEMO_VIDEO)}]))
    assert plain.loc["a", "style"] is None
    row = {"id": "a", "source": str(DEMO_VIDEO), "style": "-x;rm"}
    bad = write_sheet(tmp_path / "b.tsv", [row])
    with pytest.raises(SheetError, match=r"b\.tsv, line 2 \(id 'a'\): '-x;rm' does not match"):
        read_sheet(bad)


def test_m2d_sheet_takes_the_style_from_the_manifest(tmp_path) -> None:
    from conftest import shared_file
    from kakashi.datasets import m2d_sheet

    data = shared_file("m2d_tang2018/manifest.json").parent
    assert m2d_sheet(data, tmp_path / "m2d.tsv") == 35
    sheet = read_sheet(tmp_path / "m2d.tsv")
    assert sheet.loc["m2d-DANCE_W_1", "style"] == "waltz"
    assert sheet.loc["m2d-DANCE_C_2", "style"] == "cha-cha"
    assert set(sheet["style"]) == {"cha-cha", "rumba", "tango", "waltz"}
