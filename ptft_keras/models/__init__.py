"""Models: the backbones pre-training trains, the classifier fine-tuning builds on them, and the
course's other networks.

- ``TransformerBackbone`` (a ``keras_hub.models.Backbone``) and ``LSTMBackbone``: token ids in,
  (B, S, H) out.
- ``build_classifier``: ONE classifier builder for every backbone (ours and keras-hub's);
  ``predict_proba`` turns its logits into probabilities.
- ``TextClassifier``: raw strings in (WordPiece + packing inside), a ``build_classifier`` model
  behind; one ``.keras`` file.
- ``load_course_checkpoint``: the encoder the course pre-trained itself (``data/checkpoints``).
- ``build_lstm_classifier``: the raw-string LSTM baseline (``TextVectorization`` inside).
- ``minilm``: the real pre-trained MiniLM (sentence-transformers' all-MiniLM-L6-v2), offline.
- ``clip``: a small image-text contrastive model (chapter 5).
- ``sensor``: the 1-D convolutional sensor encoder (chapter 5).
"""

from ptft_keras.models.baseline import build_lstm_classifier
from ptft_keras.models.checkpoint import load_course_checkpoint
from ptft_keras.models.classifier import build_classifier, predict_proba, sequence_output
from ptft_keras.models.lstm import LSTMBackbone
from ptft_keras.models.text_classifier import TextClassifier, WordPiecePreprocessor
from ptft_keras.models.transformer import TransformerBackbone
from ptft_keras.models import clip, minilm, sensor  # noqa: E402  (registers their classes)
