"""Same numbers every run: two separate processes, byte-for-byte equal vocabularies and metrics.

Two processes (different ``PYTHONHASHSEED``; Rust's hash maps are randomised per process
anyway) each train the WordPiece vocabularies (English and Chinese), then run a short
pipeline: encode reviews, MLM pre-training for a few steps, ``finetuning.finetune``. The
vocabulary files must be equal byte for byte and the printed metrics equal as strings.
Before ``train_wordpiece`` broke its ties itself, no two processes agreed on the vocabulary.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ptft_keras import config, data, finetuning, models, objectives, tokenizers

    work = sys.argv[1]
    en = data.load_corpus("en", max_chars=300_000)
    zh = data.load_corpus("zh", max_chars=100_000)
    vocab = tokenizers.train_wordpiece(en, vocab_size=4000)
    tokenizers.save_vocab(vocab, os.path.join(work, "en_vocab.txt"))
    tokenizers.save_vocab(tokenizers.train_wordpiece(zh, vocab_size=4000),
                          os.path.join(work, "zh_vocab.txt"))

    config.set_seed(0)
    tok = tokenizers.WordPieceTokenizer(vocab)
    reviews = data.load_en_reviews(domain="movie", split="train")
    texts, labels = list(reviews["text"][:320]), reviews["label"].to_numpy()[:320]
    ids = tok.encode(texts, sequence_length=24)
    backbone = models.TransformerBackbone(len(vocab), 24, num_layers=1, hidden_dim=16,
                                          num_heads=2, intermediate_dim=32)
    mlm = objectives.MaskedLMPretrainer(backbone).fit(
        objectives.MLMDataset(tok.encode(en[:256], sequence_length=24), len(vocab),
                              batch_size=32, seed=0), epochs=1, verbose=0)
    print("mlm", json.dumps(mlm.history))
    classifier = models.build_classifier(backbone, 2)
    result = finetuning.finetune(classifier, (ids[:256], labels[:256]),
                                 (ids[256:], labels[256:]), backbone=backbone, epochs=2,
                                 learning_rate=3e-3)
    print("finetune", json.dumps(result.history))
    """
)


def _start(script, work, hash_seed):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               PYTHONHASHSEED=str(hash_seed))
    return subprocess.Popen([sys.executable, str(script), str(work)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproducible")
    script = root / "pipeline.py"
    script.write_text(SCRIPT)
    works = [root / "first", root / "second"]
    processes = []
    for hash_seed, work in enumerate(works, start=1):
        work.mkdir()
        processes.append(_start(script, work, hash_seed))  # both at once
    outputs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        outputs.append(stdout)
    return works, outputs


@pytest.mark.parametrize("name", ["en_vocab.txt", "zh_vocab.txt"])
def test_vocabulary_is_byte_for_byte_equal_across_processes(two_runs, name):
    (first, second), _ = two_runs
    a, b = (first / name).read_bytes(), (second / name).read_bytes()
    assert len(a.splitlines()) > 1000
    assert a == b


def test_pipeline_metrics_are_equal_across_processes(two_runs):
    _, (a, b) = two_runs
    lines = [line for line in a.splitlines() if line.startswith(("mlm", "finetune"))]
    assert len(lines) == 2, a
    assert a == b
