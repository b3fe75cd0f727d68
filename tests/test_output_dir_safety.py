"""An output_dir nobody can turn against the run: links planted where a sweep writes are refused
and what they point at is untouched, folders of other users (or writable by them) are refused,
and the files neuronperf opens there are opened without following links (issue 27)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from test_hostile_inputs import snapshot, spec_in

from neuronperf.errors import UnsafeOutputDir
from neuronperf.results.files import write_results
from neuronperf.results.journal import Journal
from neuronperf.results.lock import OutputDirLock, lock_holder
from neuronperf.util import nofollow

as_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                             reason="giving a folder to another user needs root")


def victim(tmp_path: Path) -> tuple[Path, Path]:
    """An outside file (its bytes end in a torn line, as a journal's repair would cut) and an
    outside folder, which a planted link points at."""
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "folder" / "keep.txt").write_text("kept\n")
    (outside / "file.txt").write_bytes(b'{"format": 1}\n{"torn')
    return outside / "file.txt", outside / "folder"


def refused_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("name", [
    ".lock", "journal.jsonl", "results.csv", "results.json", "run.json", "model_index.json",
    "logs", "samples", "models", "logs/compile-m-bs1-p1-0123abcd.log", "samples/m-bs1-p1-m1-w1-0123abcd",
])
def test_a_planted_link_is_refused_before_any_work_and_its_target_is_untouched(tmp_path, cli, name):
    out = tmp_path / "out"
    spec = spec_in(tmp_path, str(out))
    file, folder = victim(tmp_path)
    link = out / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(folder if name in ("logs", "samples", "models") or name.startswith("samples/") else file)
    before = snapshot(tmp_path / "outside")
    for command in ("run", "compile"):
        code, _, err = cli(command, str(spec))
        assert code == 2, err
        assert refused_line(err) == (
            f"neuronperf: error: {link} is a symbolic link; neuronperf follows none inside an output_dir (one "
            "could make it overwrite the file it points to): remove it, or use another output_dir")
    assert snapshot(tmp_path / "outside") == before
    assert link.is_symlink() and sorted(p.name for p in out.iterdir()) == sorted({name.split("/")[0]})


def test_every_open_refuses_a_link_even_one_planted_after_the_first_check(tmp_path):
    """The check before a sweep makes refusal one early line; the opens themselves are the
    guarantee: the lock (which used to empty its target), the journal and its torn-tail repair
    (which used to truncate its target), the results files and a compile log."""
    from test_compile import _entry

    from neuronperf.backends import find_backend
    from neuronperf.compilation.artifacts import compile_key
    from neuronperf.compilation.jobs import compile_all
    from neuronperf.util.paths import safe_file_stem

    out = tmp_path / "out"
    out.mkdir()
    file, _ = victim(tmp_path)
    before = snapshot(tmp_path / "outside")

    def planted(name: str) -> Path:
        for old in out.rglob("*"):
            if old.is_symlink():
                old.unlink()
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).symlink_to(file)
        return out / name

    planted(".lock")
    with pytest.raises(UnsafeOutputDir, match=r"/out/\.lock is a symbolic link"):
        OutputDirLock(str(out)).acquire()
    with pytest.raises(UnsafeOutputDir):
        lock_holder(str(out))
    planted("journal.jsonl")
    journal = Journal(str(out))
    with pytest.raises(UnsafeOutputDir, match="journal.jsonl is a symbolic link"):
        journal.record_run("k", "a", {"status": "ok"})
    with pytest.raises(UnsafeOutputDir):
        journal.load()
    planted("results.json")
    with pytest.raises(UnsafeOutputDir, match="results.json is a symbolic link"):
        write_results(str(out), [{"id": "a", "status": "ok"}])
    entry = _entry(batch_size=1)
    backend = find_backend(entry.framework, entry.device_type, entry.compiler)
    key = compile_key(entry, backend.compiler_version(entry.compiler))
    planted(f"logs/compile-{safe_file_stem(entry.id, key)}.log")
    with pytest.raises(UnsafeOutputDir, match=r"logs/compile-.*\.log is a symbolic link"):
        compile_all([entry], str(out), jobs=1)
    assert snapshot(tmp_path / "outside") == before


def test_report_writes_nothing_through_a_link_in_the_output_dir(tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("[]")
    _, folder = victim(tmp_path)
    (out / "report").symlink_to(folder)
    before = snapshot(tmp_path / "outside")
    code, _, err = cli("report", str(out))
    assert code == 2 and refused_line(err).startswith(f"neuronperf: error: {out / 'report'} is a symbolic link;")
    assert snapshot(tmp_path / "outside") == before
    (out / "report").unlink()
    code, _, err = cli("report", str(out))
    assert code == 0, err
    assert "the results hold no entries" in (out / "report" / "report.html").read_text()


def test_links_fifos_and_foreign_kinds_are_refused_without_blocking(tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "data.txt").write_text("x")
    (root / "via").symlink_to(root / "real")
    os.mkfifo(root / "real" / "pipe")
    with pytest.raises(UnsafeOutputDir, match="/via is a symbolic link"):
        nofollow.read_bytes(str(root), "via/data.txt")
    # A FIFO would block an open for writing until someone reads it; it is refused at once.
    done = threading.Event()
    errors = []

    def open_fifo() -> None:
        try:
            nofollow.open_file(str(root), "real/pipe", os.O_WRONLY | os.O_APPEND)
        except UnsafeOutputDir as e:
            errors.append(str(e))
        done.set()

    threading.Thread(target=open_fifo, daemon=True).start()
    assert done.wait(10), "opening a FIFO blocked"
    assert errors == [f"{root / 'real' / 'pipe'} is a FIFO, where neuronperf expects a regular file: remove it, "
                      "or use another output_dir"]
    with pytest.raises(UnsafeOutputDir, match="is a regular file, where neuronperf expects a folder"):
        nofollow.make_folders(str(root), "real/data.txt/below")
    # An atomic replace never replaces a link, and leaves no temporary behind.
    (root / "real" / "results.csv").symlink_to(root / "real" / "data.txt")
    with pytest.raises(UnsafeOutputDir):
        nofollow.write_atomic(str(root), "real/results.csv", b"new")
    assert (root / "real" / "data.txt").read_text() == "x"
    assert sorted(p.name for p in (root / "real").iterdir()) == ["data.txt", "pipe", "results.csv"]


def test_an_output_dir_others_may_write_to_is_refused_unless_sticky(tmp_path, cli):
    out = tmp_path / "out"
    spec = spec_in(tmp_path, str(out))
    out.mkdir()
    out.chmod(0o777)
    code, _, err = cli("run", str(spec))
    assert code == 2
    assert refused_line(err) == (
        f"neuronperf: error: {out}: writable by every user (mode 0777), who could plant links in it that "
        "redirect neuronperf's writes: `chmod go-w` it, or use an output_dir of your own")
    assert os.listdir(out) == []
    out.chmod(0o1777)  # others may add names but not replace ours; what they add is refused
    nofollow.make_folders(str(out), "logs")
    (out / "logs").chmod(0o757)
    with pytest.raises(UnsafeOutputDir, match=r"/out/logs: writable by every user \(mode 0757\)"):
        nofollow.open_file(str(out), "logs/x.log", os.O_WRONLY | os.O_CREAT)


@as_root
def test_an_output_dir_or_file_of_another_user_is_refused(tmp_path, cli):
    out = tmp_path / "out"
    spec = spec_in(tmp_path, str(out))
    out.mkdir()
    os.chown(out, 65534, 65534)
    code, _, err = cli("run", str(spec))
    assert code == 2
    assert f"neuronperf: error: {out}: owned by another user (" in refused_line(err)
    assert "uid 65534); a folder that someone else controls could redirect neuronperf's writes" in err
    assert os.listdir(out) == []
    os.chown(out, 0, 0)
    # A journal of another user (a sticky output_dir lets them create one) is not written to.
    out.chmod(0o1777)
    (out / "journal.jsonl").write_text("")
    os.chown(out / "journal.jsonl", 65534, 65534)
    with pytest.raises(UnsafeOutputDir, match="journal.jsonl: owned by another user"):
        Journal(str(out)).record_run("k", "a", {"status": "ok"})
    # A group-writable folder is the user's own only when its group holds nobody else.
    (out / "journal.jsonl").unlink()
    out.chmod(0o775)
    os.chown(out, 0, 65534)  # nogroup: the primary group of 'nobody'
    if not nofollow._private_group(65534, 0):
        with pytest.raises(UnsafeOutputDir, match=r"writable by the members of group .* \(mode 0775\)"):
            Journal(str(out)).record_run("k", "a", {"status": "ok"})


@as_root
def test_an_output_dir_reached_through_another_users_link_is_refused(tmp_path, cli):
    """A link pre-created in a shared folder under the output_dir's name chooses where the run
    writes; links of your own on the way are followed."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "out").symlink_to(tmp_path / "mine")
    os.lchown(tmp_path / "shared" / "out", 65534, 65534)
    spec = spec_in(tmp_path, str(tmp_path / "shared" / "out"))
    code, _, err = cli("run", str(spec))
    assert code == 2
    assert refused_line(err) == (
        f"neuronperf: error: {tmp_path / 'shared' / 'out'} is a symbolic link of another user (nobody, uid 65534), "
        "who chooses where it leads: use an output_dir of your own")
    assert os.listdir(tmp_path / "mine") == []
    os.lchown(tmp_path / "shared" / "out", 0, 0)
    nofollow.check_links_to(str(tmp_path / "shared" / "out" / "below"))


def test_folders_neuronperf_makes_are_never_writable_by_others_whatever_the_umask(tmp_path):
    old = os.umask(0)  # as in some containers: without a fixed mode, its own folders would be 0777
    try:
        nofollow.write_atomic(str(tmp_path / "out"), "logs/deep/x.log", b"x")
    finally:
        os.umask(old)
    for folder in (tmp_path / "out", tmp_path / "out" / "logs", tmp_path / "out" / "logs" / "deep"):
        assert stat.S_IMODE(folder.stat().st_mode) == nofollow.FOLDER_MODE == 0o755
    nofollow.make_folders(str(tmp_path / "out"), "logs/deep")  # and the next open accepts them


def test_atomic_writes_inside_a_root_keep_modes_and_durability(tmp_path):
    root = tmp_path / "r"
    nofollow.write_atomic(str(root), "a/b.txt", b"one")
    (root / "a" / "b.txt").chmod(0o640)
    nofollow.write_atomic(str(root), "a/b.txt", b"two")
    assert (root / "a" / "b.txt").read_bytes() == b"two"
    assert stat.S_IMODE((root / "a" / "b.txt").stat().st_mode) == 0o640
    assert sorted(os.listdir(root / "a")) == ["b.txt"]
    with pytest.raises(ValueError):
        nofollow.parts("a/../../etc")
