"""Finance example (chapter 5.2): a clearly SYNTHETIC stand-in for financial-news sentiment.

No labelled financial text ships inside any package we can install offline (the well-known
sets — Financial PhraseBank, FiQA, financial tweets — are downloads, some under non-commercial
licences), so the course generates headlines from templates and says so everywhere it uses them.
What the generator keeps from real financial news is the thing that makes the task hard for
word counting: the verdict depends on the *pair* (quantity, direction), not on either word.
"Cost of sales rises" is bad news and "cost of sales falls" good; "loss narrows" is good although "loss" sounds
bad. Neutral headlines (scheduling, appointments) mention the same companies and quantities.

    frame = make_headlines(600, seed=0)      # columns: text, label ("negative"/"neutral"/"positive")

Use it to compare methods, never to claim how well a model reads real financial news.
"""

import numpy as np
import pandas as pd

LABELS = ("negative", "neutral", "positive")

_COMPANIES = ("Northwind Traders", "Contoso Bank", "Fabrikam Motors", "Tailspin Airlines",
              "Litware Software", "Adventure Works", "Proseware Energy", "Woodgrove Insurance",
              "Alpine Mining", "Blue Yonder Retail", "Coho Shipping", "Margie's Foods")

# quantity -> +1 if growth is good news, -1 if growth is bad news
_QUANTITIES = {"revenue": 1, "net profit": 1, "operating margin": 1, "order backlog": 1,
               "quarterly turnover": 1, "dividend": 1, "cost of sales": -1, "net loss": -1,
               "debt": -1, "number of customer complaints": -1, "inventory write-down charge": -1}
_UP = ("rises", "jumps", "climbs", "grows", "increases", "surges")
_DOWN = ("falls", "drops", "declines", "shrinks", "slides", "decreases")
_LOSS_UP, _LOSS_DOWN = ("widens", "deepens"), ("narrows", "shrinks")
_TEMPLATES = ("{company} {quantity} {verb} {pct}% in the third quarter",
              "{company}: {quantity} {verb} {pct}% year on year",
              "{quantity} {verb} {pct}% at {company}, filing shows",
              "{company} says {quantity} {verb} by {pct}%")
_NEUTRAL = ("{company} to report quarterly results on {day}",
            "{company} appoints a new chief financial officer",
            "{company} holds its annual shareholder meeting on {day}",
            "{company} moves its headquarters to a new office building",
            "{company} shares unchanged ahead of {day}'s {quantity} figures",
            "{company} confirms the date of its {quantity} update")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")


def make_headlines(n, seed=0, neutral_share=0.25):
    """n synthetic headlines -> DataFrame(text, label), deterministic for ``seed``.

    Label rule: a directional headline is positive when the quantity moves the way that is good
    for the company (sign of quantity x sign of direction > 0), negative otherwise; scheduling
    and appointment headlines are neutral (share ``neutral_share``).
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int (number of headlines), got {n!r}.")
    if not 0 <= neutral_share < 1:
        raise ValueError(f"neutral_share must be in [0, 1), got {neutral_share!r}.")
    rng = np.random.default_rng(seed)
    quantities = list(_QUANTITIES)
    rows = []
    for _ in range(int(n)):
        company = _COMPANIES[rng.integers(len(_COMPANIES))]
        quantity = quantities[rng.integers(len(quantities))]
        if rng.random() < neutral_share:
            template = _NEUTRAL[rng.integers(len(_NEUTRAL))]
            text = template.format(company=company, quantity=quantity,
                                   day=_DAYS[rng.integers(len(_DAYS))])
            rows.append((text, "neutral"))
            continue
        direction = 1 if rng.random() < 0.5 else -1
        if quantity == "net loss":
            verbs = _LOSS_UP if direction > 0 else _LOSS_DOWN
        else:
            verbs = _UP if direction > 0 else _DOWN
        template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        text = template.format(company=company, quantity=quantity,
                               verb=verbs[rng.integers(len(verbs))], pct=int(rng.integers(2, 40)))
        text = text[0].upper() + text[1:]
        good = _QUANTITIES[quantity] * direction > 0
        rows.append((text, "positive" if good else "negative"))
    return pd.DataFrame(rows, columns=["text", "label"])
