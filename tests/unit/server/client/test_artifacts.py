"""`--save-artifacts`: file names made safe, clashes numbered, nothing written outside DIR, a failed
read reported without losing the others; on a fake `resources/read`."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from mcp_jobs.server.client import artifacts
from mcp_jobs.server.client.artifacts import (
    NAME_MAX_BYTES,
    ArtifactReport,
    open_new_file,
    pick_contents,
    safe_file_name,
    save_artifacts,
)

pytestmark = pytest.mark.anyio

URI = "mcp-jobs://jobs/1234/artifacts/"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def link(name: str, uri: str | None = None, size: int | None = None) -> types.ResourceLink:
    return types.ResourceLink(name=name, uri=uri or URI + name.replace("/", "%2F"), size=size)


class FakeServer:
    """`resources/read` over a dict: text or bytes by URI; a missing URI is the 2026-07-28 error."""

    def __init__(self, served: dict[str, str | bytes]) -> None:
        self.served = served
        self.reads: list[str] = []

    async def read(self, uri: str) -> types.ReadResourceResult:
        self.reads.append(uri)
        if uri not in self.served:
            raise MCPError(-32602, "Resource not found", {"uri": uri})
        value = self.served[uri]
        if isinstance(value, str):
            return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, text=value)])
        blob = base64.b64encode(value).decode()
        return types.ReadResourceResult(contents=[types.BlobResourceContents(uri=uri, blob=blob)])


def files_under(root: Path) -> set[Path]:
    return {Path(folder, name) for folder, _, names in os.walk(root) for name in names}


@pytest.mark.parametrize(
    ("name", "uri", "expected"),
    [
        ("report.csv", URI + "report.csv", "report.csv"),
        ("../../etc/evil", URI + "x", "etc_evil"),
        ("/etc/passwd", URI + "x", "etc_passwd"),
        ("..\\..\\boot.ini", URI + "x", "boot.ini"),
        ("C:\\Windows\\win.ini", URI + "x", "C_Windows_win.ini"),
        ("a\x00b\x1b[2Jc\r\n.txt", URI + "x", "ab[2Jc.txt"),
        ("invoice\u202egpj.exe", URI + "x", "invoicegpj.exe"),  # a right-to-left override, gone
        ("caf\u0065\u0301.txt", URI + "x", "caf\u00e9.txt"),  # NFC
        ("..", URI + "from-the-uri.bin", "from-the-uri.bin"),
        (" . / .. ", "https://example.com/data/my%20file.json?x=1", "my file.json"),
        ("", "mcp-jobs://jobs/1/artifacts/%2E%2E", "artifact"),
        ("\x1b\x07", "urn:isbn:0451450523", "isbn_0451450523"),
        ("\x1b\x07", "https://example.com/", "artifact"),
    ],
)
def test_a_name_is_made_a_plain_file_name(name: str, uri: str, expected: str) -> None:
    cleaned = safe_file_name(name, uri)
    assert cleaned == expected
    assert "/" not in cleaned and "\\" not in cleaned and cleaned not in ("", ".", "..")


def test_a_long_name_is_cut_keeping_its_extension() -> None:
    cleaned = safe_file_name("\u00e9" * 300 + ".csv", URI)
    assert cleaned.endswith(".csv") and len(cleaned.encode()) <= NAME_MAX_BYTES
    assert cleaned.removesuffix(".csv") == "\u00e9" * len(cleaned.removesuffix(".csv")), "no character cut in two"


@pytest.mark.parametrize("name", ["../x", "x/y", "..", "."])
def test_opening_refuses_anything_but_a_plain_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a plain name"):
        open_new_file(tmp_path, name)
    assert files_under(tmp_path) == set()


async def test_clashes_are_numbered_and_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("mine", encoding="utf-8")
    (out / "README").write_text("mine too", encoding="utf-8")
    links = [link("a.txt", URI + "1"), link("a.txt", URI + "2"), link("a/../a.txt", URI + "3"), link("README")]
    server = FakeServer({URI + "1": "one", URI + "2": "two", URI + "3": "three", links[3].uri: "readme"})
    report = await save_artifacts(links, out, server.read)
    assert [saved.path.name for saved in report.saved] == ["a-1.txt", "a-2.txt", "a_a.txt", "README-1"]
    assert [saved.path.read_text(encoding="utf-8") for saved in report.saved] == ["one", "two", "three", "readme"]
    assert (out / "a.txt").read_text(encoding="utf-8") == "mine" and (out / "README").read_text() == "mine too"


async def test_a_planted_symlink_is_not_written_through(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious", encoding="utf-8")
    (out / "x.txt").symlink_to(victim)
    (out / "dangling").symlink_to(tmp_path / "nowhere")
    links = [link("x.txt"), link("dangling")]
    report = await save_artifacts(links, out, FakeServer({links[0].uri: "evil", links[1].uri: "evil"}).read)
    assert [saved.path.name for saved in report.saved] == ["x-1.txt", "dangling-1"]
    assert victim.read_text(encoding="utf-8") == "precious" and not (tmp_path / "nowhere").exists()


async def test_hostile_names_stay_inside_the_directory(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    hostile = ["../../etc/evil", "../evil", "/tmp/evil", "..", "....//evil", "..\\evil", "~/.bashrc", "\x00"]
    links = [link(name, f"{URI}{index}") for index, name in enumerate(hostile)]
    server = FakeServer({item.uri: "evil" for item in links})
    report = await save_artifacts(links, out, server.read)
    assert not report.failed and len(report.saved) == len(hostile)
    assert all(saved.path.parent == out for saved in report.saved), [saved.path for saved in report.saved]
    assert files_under(tmp_path) == {saved.path for saved in report.saved}, "nothing anywhere else"


async def test_text_is_written_as_utf8_and_blobs_decoded_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "CHUNK_CHARS", 8)  # many chunks, so their seams are tested
    data = os.urandom(1001)
    text = "caf\u00e9 \u2603 " * 50
    links = [link("data.bin", size=len(data)), link("notes.txt", size=len(text.encode()))]
    report = await save_artifacts(links, tmp_path, FakeServer({links[0].uri: data, links[1].uri: text}).read)
    assert (tmp_path / "data.bin").read_bytes() == data
    assert (tmp_path / "notes.txt").read_bytes() == text.encode("utf-8")
    assert [(saved.bytes, saved.size_mismatch) for saved in report.saved] == [
        (1001, False),
        (len(text.encode()), False),
    ]


async def test_a_size_other_than_the_links_is_flagged(tmp_path: Path) -> None:
    stated = link("short.txt", size=100)
    report = await save_artifacts([stated], tmp_path, FakeServer({stated.uri: "12 bytes, no"}).read)
    (saved,) = report.saved
    assert saved.bytes == 12 and saved.declared_size == 100 and saved.size_mismatch


async def test_a_failed_read_is_reported_and_the_others_saved(tmp_path: Path) -> None:
    links = [link("gone.csv"), link("kept.csv"), link("broken.bin")]

    async def read(uri: str) -> types.ReadResourceResult:
        if uri == links[2].uri:  # valid at first, bad base64 further in: a file half-written
            blob = base64.b64encode(b"x" * 30).decode() + "!!!!"
            return types.ReadResourceResult(contents=[types.BlobResourceContents(uri=uri, blob=blob)])
        return await FakeServer({links[1].uri: "a,b\n"}).read(uri)

    failures: list[str] = []
    report = await save_artifacts(links, tmp_path, read, on_failed=lambda failed: failures.append(failed.name))
    assert [saved.name for saved in report.saved] == ["kept.csv"]
    assert failures == ["gone.csv", "broken.bin"]
    assert report.failed[0].error == "Resource not found (JSON-RPC error -32602)"
    assert "not valid base64" in report.failed[1].error
    assert files_under(tmp_path) == {tmp_path / "kept.csv"}, "the half-written file is removed"


def test_the_report_as_json() -> None:
    report = ArtifactReport()
    assert report.as_json() == {"savedArtifacts": [], "failedArtifacts": []}


def test_of_several_contents_the_one_for_the_uri_is_taken() -> None:
    result = types.ReadResourceResult(
        contents=[
            types.TextResourceContents(uri="file:///other", text="other"),
            types.TextResourceContents(uri="file:///mine", text="mine"),
        ]
    )
    assert isinstance(chosen := pick_contents(result, "file:///mine"), types.TextResourceContents)
    assert chosen.text == "mine"
    with pytest.raises(ValueError, match="no contents"):
        pick_contents(types.ReadResourceResult(contents=[]), "file:///mine")
