import numpy as np
import pytest

from ptft_keras.data import finance


def test_deterministic_and_seed_dependent():
    a, b = finance.make_headlines(200, seed=3), finance.make_headlines(200, seed=3)
    assert a.equals(b)
    assert not a.equals(finance.make_headlines(200, seed=4))
    assert set(a.label) == set(finance.LABELS)


def test_label_follows_quantity_times_direction():
    frame = finance.make_headlines(2000, seed=0)
    up = set(finance._UP) | set(finance._LOSS_UP)
    down = set(finance._DOWN) | set(finance._LOSS_DOWN) - set(finance._LOSS_UP)
    checked = 0
    for text, label in zip(frame.text, frame.label):
        words = text.lower().replace(":", "").split()
        quantity = [q for q in finance._QUANTITIES if q in text.lower()]
        verb = [w for w in words if w in up | down]
        if label == "neutral":
            assert not verb, text
            continue
        assert len(quantity) == 1 and len(verb) == 1, text
        if quantity[0] == "net loss":
            direction = 1 if verb[0] in finance._LOSS_UP else -1
        else:
            direction = 1 if verb[0] in finance._UP else -1
        expected = "positive" if finance._QUANTITIES[quantity[0]] * direction > 0 else "negative"
        assert label == expected, text
        checked += 1
    assert checked > 1000


def test_words_alone_do_not_decide_the_label():
    # Each direction word occurs in good and in bad news: the pair carries the verdict.
    frame = finance.make_headlines(3000, seed=1)
    frame = frame[frame.label != "neutral"]
    for verb in ("rises", "falls", "shrinks"):
        labels = set(frame[frame.text.str.contains(f" {verb} ")].label)
        assert labels == {"positive", "negative"}, (verb, labels)


def test_neutral_share_and_errors():
    frame = finance.make_headlines(4000, seed=2, neutral_share=0.3)
    assert abs(np.mean(frame.label == "neutral") - 0.3) < 0.03
    with pytest.raises(ValueError, match="positive int"):
        finance.make_headlines(0)
    with pytest.raises(ValueError, match="neutral_share"):
        finance.make_headlines(10, neutral_share=1.0)
