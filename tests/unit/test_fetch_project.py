"""`botenv fetch-project`: a project archive from storage (local storage here, real tar
files) unpacked safely as a Rasa project.

Every hostile archive is built here with tarfile/gzip and fed through the command. The
command must refuse it with a message that names the member and the rule or limit, exit 1,
and leave the target directory empty and everything beside it untouched."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from botenv.cli import main
from botenv.cli.jobsteps.fetch import FetchError, unpack

PROJECT = {
    "config.yml": "recipe: default.v1\n",
    "domain.yml": "version: '3.1'\n",
    "data/nlu.yml": "nlu: []\n",
}
MiB = 1 << 20


class _Zeros(io.RawIOBase):
    """`size` zero bytes, without holding them in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def member(
    name: str, data: bytes | str = b"", **attrs: object
) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    raw = data.encode() if isinstance(data, str) else data
    info.size = len(raw)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, io.BytesIO(raw)


def link(name: str, target: str, type_: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = type_, target
    return info, None


def project(prefix: str = "") -> list:
    return [member(prefix + name, text) for name, text in PROJECT.items()]


def write_archive(path: Path, members: list, fmt: int = tarfile.PAX_FORMAT) -> Path:
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz,
        tarfile.open(fileobj=gz, mode="w", format=fmt) as tar,
    ):
        for info, data in members:
            tar.addfile(info, data)
    return path


def archive(path: Path, files: dict[str, str], links: dict[str, str] | None = None) -> Path:
    return write_archive(
        path,
        [member(n, t) for n, t in files.items()] + [link(n, t) for n, t in (links or {}).items()],
    )


def snapshot(top: Path) -> dict[str, object]:
    """Every path under top (links not followed) with its type, mode and content."""
    seen: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            what: object = st.st_mode
            if stat.S_ISREG(st.st_mode):
                what = (st.st_mode, path.read_bytes())
            elif stat.S_ISLNK(st.st_mode):
                what = ("link", os.readlink(path))
            seen[str(path.relative_to(top))] = what
    return seen


class Setup:
    """A local store with the archive, and a work dir holding the (empty) target and a
    file beside it that an escape would read or overwrite."""

    def __init__(self, tmp: Path) -> None:
        self.store = tmp / "store"
        (self.store / "projects").mkdir(parents=True)
        self.work = tmp / "work"
        self.target = self.work / "project"
        self.target.mkdir(parents=True)
        (self.work / "OUTSIDE").write_text("a secret beside the target\n")
        (self.work / "outside").mkdir()
        (self.work / "outside" / "victim.txt").write_text("original\n")

    def archive(self, members: list, fmt: int = tarfile.PAX_FORMAT) -> str:
        write_archive(self.store / "projects" / "p.tar.gz", members, fmt)
        return "p.tar.gz"

    def run(
        self, capsys: pytest.CaptureFixture[str], *flags: str, obj: str = "p.tar.gz"
    ) -> tuple[int, str]:
        storage = json.dumps({"provider": "local", "path": str(self.store), "prefix": "projects/"})
        code = main(
            [
                "fetch-project",
                "--storage-json",
                storage,
                "--object",
                obj,
                "--into",
                str(self.target),
                *flags,
            ]
        )
        return code, capsys.readouterr().err

    def refused(
        self,
        capsys: pytest.CaptureFixture[str],
        members: list,
        *expected: str,
        flags: tuple[str, ...] = (),
        fmt: int = tarfile.PAX_FORMAT,
    ) -> str:
        self.archive(members, fmt)
        before = snapshot(self.work)
        code, err = self.run(capsys, *flags)
        assert code == 1, err
        last = err.splitlines()[-1]  # after the download's progress line
        assert last.startswith("error: "), err
        for text in expected:
            assert text in last, err
        assert list(self.target.iterdir()) == [], "nothing may be written into the target"
        assert snapshot(self.work) == before, "nothing may be written beside the target"
        return err


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


ONLY_FILES = "a Rasa project needs only regular files and directories"


# -- good archives --------------------------------------------------------------------------


def test_a_project_at_the_top_or_in_one_folder_is_unpacked_as_the_root(tmp_path: Path) -> None:
    flat = unpack(archive(tmp_path / "a.tar.gz", PROJECT), tmp_path / "a")
    assert (flat / "data" / "nlu.yml").read_text() == "nlu: []\n"
    wrapped = archive(tmp_path / "b.tar.gz", {f"acme-bot/{k}": v for k, v in PROJECT.items()})
    root = unpack(wrapped, tmp_path / "b")
    assert root == tmp_path / "b"
    assert sorted(p.name for p in root.iterdir()) == ["config.yml", "data", "domain.yml"]


def test_an_archive_made_by_tar_with_folders_and_dot_prefixes_is_unpacked(tmp_path: Path) -> None:
    dirs = [
        member(n, type=tarfile.DIRTYPE, mode=0o755)
        for n in ("./", "./acme-bot", "./acme-bot/data/")
    ]
    members = [*dirs, *project("./acme-bot/"), member("./._acme-bot", "mac metadata")]
    root = unpack(write_archive(tmp_path / "t.tar.gz", members), tmp_path / "t")
    assert sorted(p.name for p in root.iterdir()) == ["config.yml", "data", "domain.yml"]


def test_modes_are_masked_no_setuid_setgid_sticky_or_exec(setup: Setup, capsys) -> None:
    setup.archive(
        [
            member("data", type=tarfile.DIRTYPE, mode=0o3777),
            *project(),
            member("data/run.yml", "x", mode=0o6777),
        ]
    )
    code, err = setup.run(capsys)
    assert code == 0, err
    assert stat.S_IMODE((setup.target / "data" / "run.yml").stat().st_mode) == 0o644
    assert stat.S_IMODE((setup.target / "config.yml").stat().st_mode) == 0o644
    assert stat.S_IMODE((setup.target / "data").stat().st_mode) == 0o755


def test_the_command_fetches_from_storage(setup: Setup, capsys) -> None:
    setup.archive(project("acme-bot/"))
    code, err = setup.run(capsys)
    assert code == 0, err
    assert (setup.target / "domain.yml").is_file()
    code, err = setup.run(capsys, obj="nope.tar.gz")
    assert code == 1 and err.splitlines()[-1].startswith("error: ")


def test_the_console_entry_point_exits_1_on_refusal(setup: Setup) -> None:
    setup.archive([*project(), link("data/l.yml", "/etc/passwd")])
    storage = json.dumps({"provider": "local", "path": str(setup.store), "prefix": "projects/"})
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "botenv",
            "fetch-project",
            "--storage-json",
            storage,
            "--object",
            "p.tar.gz",
            "--into",
            str(setup.target),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    last = run.stderr.splitlines()[-1]
    assert last.startswith("error: member 'data/l.yml' is a symbolic link"), run.stderr


def test_non_projects_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="not a Rasa project: no domain.yml"):
        unpack(
            archive(tmp_path / "c.tar.gz", {"config.yml": "x", "data/nlu.yml": "y"}), tmp_path / "c"
        )
    assert not (tmp_path / "c").exists() or list((tmp_path / "c").iterdir()) == []


def test_a_target_that_is_not_empty_is_refused(setup: Setup, capsys) -> None:
    setup.archive(project())
    (setup.target / "config.yml").write_text("already here\n")
    code, err = setup.run(capsys)
    assert code == 1 and "is not empty" in err
    assert (setup.target / "config.yml").read_text() == "already here\n"


def test_a_failure_while_writing_leaves_the_target_as_it_was(tmp_path: Path, monkeypatch) -> None:
    from botenv.cli.jobsteps import fetch

    calls = []

    def failing_fchmod(fd: int, mode: int) -> None:
        calls.append(mode)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        os.chmod(fd, mode)

    monkeypatch.setattr(fetch.os, "fchmod", failing_fchmod)
    with pytest.raises(FetchError, match="No space left on device"):
        unpack(archive(tmp_path / "a.tar.gz", PROJECT), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    calls.clear()
    with pytest.raises(FetchError, match="No space left on device"):
        unpack(archive(tmp_path / "b.tar.gz", PROJECT), tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []


# -- links --------------------------------------------------------------------------------


def test_a_link_that_escapes_once_the_top_folder_is_lifted(setup: Setup, capsys) -> None:
    # inside before the lift (proj/data/../../OUTSIDE is the target's OUTSIDE), beside it after
    setup.refused(
        capsys,
        [
            member("proj/", type=tarfile.DIRTYPE),
            *project("proj/"),
            link("proj/data/secret.yml", "../../OUTSIDE"),
        ],
        "member 'proj/data/secret.yml' is a symbolic link",
        ONLY_FILES,
    )
    setup.refused(
        capsys,
        [*project("proj/"), link("proj/parent", "..")],
        "member 'proj/parent' is a symbolic link",
    )


def test_two_links_in_sequence(setup: Setup, capsys) -> None:
    # m is checked while l does not exist yet; l then turns m into the target's parent
    setup.refused(
        capsys,
        [*project(), link("a/b/c/m", "l/../OUTSIDE"), link("a/b/c/l", "../../..")],
        "member 'a/b/c/m' is a symbolic link",
        ONLY_FILES,
    )


def test_an_archive_shaped_like_cve_2025_4517(setup: Setup, capsys) -> None:
    # Directories with 247-character names reached through one-letter links, then a link
    # whose resolved path exceeds PATH_MAX (so a non-strict realpath stops resolving it),
    # then a link through it to a directory beside the target, then files written through
    # that link: one overwriting a file there, one created there.
    comp, steps, path, members = "d" * 247, "abcdefghijklmnop", "", list(project())
    for step in steps:
        members.append(member(f"{path}{comp}", type=tarfile.DIRTYPE))
        members.append(link(f"{path}{step}", comp))
        path += comp + "/"
    chain = "/".join(steps) + "/" + "l" * 254
    members += [
        link(chain, "../" * len(steps)),
        link("escape", chain + "/../outside"),
        member("escape/victim.txt", "overwritten\n"),
        member("escape/created.txt", "created\n"),
    ]
    setup.refused(capsys, members, "member 'a' is a symbolic link", ONLY_FILES)
    assert (setup.work / "outside" / "victim.txt").read_text() == "original\n"
    assert sorted(os.listdir(setup.work / "outside")) == ["victim.txt"]


def test_a_hard_link(setup: Setup, capsys) -> None:
    setup.refused(
        capsys,
        [*project(), link("data/copy.yml", "config.yml", tarfile.LNKTYPE)],
        "member 'data/copy.yml' is a hard link",
        ONLY_FILES,
    )


@pytest.mark.parametrize(
    "type_,word",
    [
        (tarfile.FIFOTYPE, "FIFO"),
        (tarfile.CHRTYPE, "character device"),
        (tarfile.BLKTYPE, "block device"),
    ],
)
def test_special_files(setup: Setup, capsys, type_: bytes, word: str) -> None:
    setup.refused(
        capsys,
        [*project(), member("data/dev", type=type_)],
        f"member 'data/dev' is a {word}",
        ONLY_FILES,
    )


def test_a_sparse_member(setup: Setup, capsys) -> None:
    # GNU sparse 0.0 in pax headers: 5 bytes stored, 32 MiB once expanded
    info, data = member("data/big.yml", "hello")
    info.pax_headers = {
        "GNU.sparse.size": str(32 * MiB),
        "GNU.sparse.numblocks": "1",
        "GNU.sparse.offset": "0",
        "GNU.sparse.numbytes": "5",
    }
    setup.refused(
        capsys, [*project(), (info, data)], "member 'data/big.yml' is a sparse file", ONLY_FILES
    )


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,rule",
    [
        ("/data/abs.yml", "is an absolute path"),
        ("data/../../escape.yml", "has a '..' component"),
        ("..", "has a '..' component"),
        ("data\\..\\..\\win.yml", "has a backslash"),
        ("data/nul\0.yml", "has a NUL or control character"),
    ],
)
def test_unsafe_names(setup: Setup, capsys, name: str, rule: str) -> None:
    info, data = member(name, "x")
    if "\0" in name:  # only a pax path can carry it
        info.pax_headers = {"path": name}
    setup.refused(capsys, [*project(), (info, data)], f"member {name!r} {rule}")
    assert not (setup.work / "escape.yml").exists()


def test_a_pax_header_that_renames_a_member_outside(setup: Setup, capsys) -> None:
    info, data = member("data/ok.yml", "x")
    info.pax_headers = {"path": "../pax-escape.yml"}
    setup.refused(
        capsys, [*project(), (info, data)], "member '../pax-escape.yml' has a '..' component"
    )


def test_a_pax_link_path_on_a_regular_file(setup: Setup, capsys) -> None:
    info, data = member("data/ok.yml", "x")
    info.pax_headers = {"linkpath": "/etc/passwd"}
    setup.refused(
        capsys, [*project(), (info, data)], "member 'data/ok.yml' has the pax header 'linkpath'"
    )


@pytest.mark.parametrize("second", ["config.yml", "./config.yml", "data//nlu.yml"])
def test_duplicate_members(setup: Setup, capsys, second: str) -> None:
    setup.refused(
        capsys,
        [*project(), member(second, "evil: true\n")],
        f"member {second!r} is a second entry for",
        "would overwrite",
    )


def test_a_file_where_a_folder_is_needed(setup: Setup, capsys) -> None:
    setup.refused(
        capsys,
        [member("data", "I am a file"), *project()],
        "member 'data/nlu.yml' needs 'data' to be a directory",
    )


# -- sizes ----------------------------------------------------------------------------------


def test_a_gzip_bomb_is_refused_on_the_byte_cap(setup: Setup, capsys) -> None:
    big = tarfile.TarInfo("data/zeros.yml")
    big.size = 32 * MiB  # 32 MiB of zeros is about 32 KiB compressed
    setup.refused(
        capsys,
        [*project(), (big, _Zeros(big.size))],
        "member 'data/zeros.yml'",
        "above the limit of 1048576 bytes",
        "--max-bytes",
        "BOTENV_FETCH_MAX_BYTES",
        flags=("--max-bytes", "1Mi"),
    )
    assert (setup.store / "projects" / "p.tar.gz").stat().st_size < 100_000


def test_a_huge_pax_header_is_refused_while_reading(setup: Setup, capsys) -> None:
    # no member is big, the stream is: a 2 MiB header compresses to a few KiB
    info, data = member("data/ok.yml", "x")
    info.pax_headers = {"comment": "x" * (2 * MiB)}
    setup.refused(
        capsys, [*project(), (info, data)], "after member 'data/nlu.yml'", "header larger than"
    )


def test_too_many_files(setup: Setup, capsys) -> None:
    many = [member(f"data/f{i:02}.yml", "x: 1\n") for i in range(30)]
    setup.refused(
        capsys,
        [*project(), *many],
        "member 'data/f17.yml' is entry 21",
        "above the limit of 20 files and directories",
        "--max-files",
        "BOTENV_FETCH_MAX_FILES",
        flags=("--max-files", "20"),
    )


def test_the_file_cap_falls_back_to_the_environment(
    setup: Setup, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTENV_FETCH_MAX_FILES", "3")
    setup.refused(
        capsys,
        [*project(), member("data/more.yml", "x")],
        "member 'data/more.yml'",
        "above the limit of 3 files",
    )


def test_a_high_expansion_ratio(setup: Setup, capsys) -> None:
    big = tarfile.TarInfo("data/zeros.yml")
    big.size = 4 * MiB  # well under the default byte cap, but about 1000 times its packing
    setup.refused(
        capsys,
        [*project(), (big, _Zeros(big.size))],
        "member 'data/zeros.yml'",
        "above the limit of 100",
        "--max-ratio",
        "BOTENV_FETCH_MAX_RATIO",
    )


def test_the_stream_reader_stops_at_its_cap() -> None:
    from botenv.cli.jobsteps.fetch import Bounded, LimitExceeded

    reader = Bounded(io.BytesIO(bytes(100)), cap=10, max_read=8)
    assert reader.read(8) == bytes(8)
    with pytest.raises(LimitExceeded):
        reader.read(8)
    with pytest.raises(LimitExceeded):
        Bounded(io.BytesIO(bytes(100)), cap=10, max_read=8).seek(11)
    with pytest.raises(LimitExceeded):
        Bounded(io.BytesIO(bytes(100)), cap=100, max_read=8).read(9)
