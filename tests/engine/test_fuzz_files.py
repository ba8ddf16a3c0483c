"""The project's own fuzz test (issue 11): seeded byte and structure mutations of every file format
the app reads; each outcome must be a load or a one-line ``AtlasError``, each within 2 s of CPU.

A few hundred cases per format (``GAN_ATLAS_FUZZ_CASES``, default 300) on tiny seed files, and a
few dozen (``GAN_ATLAS_FUZZ_FIXTURE_CASES``, default 25) on each real reference file of
``../shared/fixtures`` (StyleGAN2/3, conditional, ProGAN, BigGAN: slower per case), the same
cases on every run (seeded). ``scripts/fuzz_files.py`` runs ten thousand per format and measures
memory. A new format is one line in ``tests/fuzz_seeds.FORMATS`` or ``FIXTURE_FORMATS``.
"""

from __future__ import annotations

import os

import pytest
import torch

from engine.errors import AtlasError
from tests.fuzz_seeds import FIXTURE_FORMATS, FIXTURES, FORMATS
from tests.fuzzing import CPU_LIMIT, fuzz

CASES = int(os.environ.get("GAN_ATLAS_FUZZ_CASES", "300"))
FIXTURE_CASES = int(os.environ.get("GAN_ATLAS_FUZZ_FIXTURE_CASES", "25"))
SEED = 11


@pytest.fixture(autouse=True)
def _one_thread():
    """Kilobyte tensors: a second intra-op thread only adds hand-offs (and waits, on a loaded machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])
def test_every_mutation_loads_or_is_refused_in_one_line(fmt, tmp_path):
    report = fuzz(fmt, tmp_path, CASES, SEED, expected=(AtlasError,))
    assert report.cases[0].outcome == "loaded", f"the unmutated seed does not load: {report.cases[0].detail}"
    assert not report.failures, report.summary() + "\n" + report.describe_failures()
    assert report.count("refused") > 0 and report.count("loaded") > 1, report.summary()
    assert report.max_cpu <= CPU_LIMIT


@pytest.mark.skipif(not (FIXTURES / "manifest.json").is_file(), reason=f"no reference fixtures at {FIXTURES}")
@pytest.mark.parametrize("fmt", FIXTURE_FORMATS, ids=[f.name for f in FIXTURE_FORMATS])
def test_mutated_reference_files_load_or_are_refused_in_one_line(fmt, tmp_path):
    report = fuzz(fmt, tmp_path, FIXTURE_CASES, SEED, expected=(AtlasError,))
    assert report.cases[0].outcome == "loaded", f"the unmutated fixture does not load: {report.cases[0].detail}"
    assert not report.failures, report.summary() + "\n" + report.describe_failures()
    assert report.max_cpu <= CPU_LIMIT


def test_the_nvidia_seed_is_a_faithful_snapshot(tmp_path):
    """The crafted NVIDIA seed converts back to the generator it was made from, image for image."""
    from engine.models import load_generator
    from tests.engine.tiny_generators import tiny_stylegan2
    from tests.fuzz_seeds import nvidia_seed

    gen = load_generator(str(nvidia_seed(tmp_path)), device="cpu")
    ref = tiny_stylegan2(seed=5, resolution=8)
    z = ref.seed_latents([1, 2])
    with torch.no_grad():
        assert torch.equal(gen.decode(z, "z"), ref.decode(z, "z"))
