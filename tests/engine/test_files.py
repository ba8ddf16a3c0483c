"""Saving never deletes what it did not write; atomic writes respect the umask and clean up after kills."""

import json
import os
import time

import pytest
import torch
from safetensors.torch import save as st_save

from engine.directions import DirectionSet
from engine.errors import AtlasError
from engine.files import atomic_write
from engine.latents import FORMAT as LATENT_FORMAT
from engine.latents import Latent, save_latent
from tests.engine.test_directions import make_set
from tests.engine.tiny_generators import tiny_dcgan


def _hostile_manifest(path, name: str, sha: str | None = None) -> None:
    man = json.loads(path.read_text())
    man["tensors"]["file"] = name
    if sha is not None:
        man["tensors"]["sha256"] = sha
    path.write_text(json.dumps(man))


@pytest.mark.parametrize("victim", ["face.png", "../outside.png", "set.deadbeef.safetensors"])
def test_saving_over_a_set_never_deletes_a_file_its_manifest_names(tmp_path, victim):
    folder = tmp_path / "lib"
    folder.mkdir()
    ds = make_set()
    path = ds.save(folder / "set.json")
    target = (folder / victim).resolve()
    target.write_bytes(b"precious")
    # the manifest names the victim, even with the victim's own hash: a save must not remove it unless
    # it is this set's own tensor file (name pattern) holding what the manifest says
    import hashlib

    _hostile_manifest(path, victim, hashlib.sha256(b"precious").hexdigest() if "safetensors" not in victim else None)
    ds.directions[0].annotation.name = "changed"
    ds.directions[0].vector = ds.directions[0].vector + 1  # new tensors: a new tensor file is written
    ds.save(path)
    assert target.read_bytes() == b"precious"
    assert DirectionSet.load(path).directions[0].annotation.name == "changed"


def test_saving_over_a_set_through_a_symlink_keeps_the_link_target(tmp_path):
    ds = make_set()
    path = ds.save(tmp_path / "set.json")
    old = next(tmp_path.glob("set.*.safetensors"))
    keep = tmp_path / "elsewhere.bin"
    keep.write_bytes(old.read_bytes())
    old.unlink()
    old.symlink_to(keep)  # same name and same content hash, but a link
    ds.directions[0].vector = ds.directions[0].vector * 2
    ds.save(path)
    assert keep.exists() and old.is_symlink()


def test_a_resave_still_removes_its_own_old_tensor_file(tmp_path):
    ds = make_set()
    path = ds.save(tmp_path / "set.json")
    first = next(tmp_path.glob("set.*.safetensors"))
    ds.directions[0].vector = ds.directions[0].vector * 2
    ds.save(path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert first.name not in files and len([f for f in files if f.endswith(".safetensors")]) == 1


def _latent_with_tuning_ref(path, name: str, sha: str) -> None:
    man = {"format": LATENT_FORMAT, "version": 1, "space": "z", "model": {}, "tuning": {"file": name, "sha256": sha}}
    path.write_bytes(st_save({"code": torch.zeros(1, 8)}, metadata={"gan_atlas": json.dumps(man)}))


@pytest.mark.parametrize("victim", ["face.png", "../outside.png"])
def test_saving_over_a_latent_never_deletes_a_file_it_names(tmp_path, victim):
    import hashlib

    folder = tmp_path / "lat"
    folder.mkdir()
    target = (folder / victim).resolve()
    target.write_bytes(b"photo")
    path = folder / "face.latent"
    _latent_with_tuning_ref(path, victim, hashlib.sha256(b"photo").hexdigest())
    gen = tiny_dcgan()
    save_latent(Latent(gen.seed_latents([1]), "z", {"name": gen.name}), path)
    assert target.read_bytes() == b"photo"


def test_atomic_write_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.json", b"{}")
        ds = make_set()
        p = ds.save(tmp_path / "s.json")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert p.stat().st_mode & 0o777 == 0o644
    assert next(tmp_path.glob("s.*.safetensors")).stat().st_mode & 0o777 == 0o644


def test_stale_temp_files_of_the_same_target_are_removed(tmp_path):
    stale = tmp_path / ".a.json.abc123.tmp"
    fresh = tmp_path / ".a.json.def456.tmp"  # maybe a save running right now: left alone
    other = tmp_path / ".b.json.abc123.tmp"
    for p in (stale, fresh, other):
        p.write_bytes(b"x")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    atomic_write(tmp_path / "a.json", b"{}")
    assert not stale.exists() and fresh.exists() and other.exists()


def test_unwritable_targets_name_the_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AtlasError, match="file"):
        atomic_write(blocker / "out.json", b"{}")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(AtlasError, match="ro: cannot write"):
            atomic_write(ro / "out.json", b"{}")
