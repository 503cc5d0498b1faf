"""Input checks shared by every entry point: texts, labels, token ids.

Each raises a ``ValueError`` (``DataError``) that names the problem and the fix, before any
training step.
"""

import math
import numbers

import numpy as np
import pandas as pd


class DataError(ValueError):
    """Bad or inconsistent data: the message says what is wrong and how to fix it."""


# --- input checks --------------------------------------------------------------------------------
def _show(indices, limit=5):
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")


def _is_missing(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _as_list(values, what, name):
    if values is None:
        raise DataError(f"{name}: {what} is None; pass a list of {what}.")
    if isinstance(values, (str, bytes)):
        raise DataError(
            f"{name}: {what} is a single {type(values).__name__}, not a sequence; wrap it in a "
            f"list: [{what[:-1]}]."
        )
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.to_numpy()
    if isinstance(values, pd.DataFrame):
        raise DataError(f"{name}: {what} is a DataFrame; pass one column, e.g. df['{what[:-1]}'].")
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            hint = " (one-hot? use labels.argmax(axis=-1))" if what == "labels" else ""
            raise DataError(f"{name}: {what} must be 1-D, got an array of shape "
                            f"{values.shape}{hint}.")
        return list(values)
    try:
        return list(values)
    except TypeError as err:
        raise DataError(f"{name}: {what} must be a list, array or Series, got "
                        f"{type(values).__name__}.") from err


def _check_texts(texts, name):
    items = _as_list(texts, "texts", name)
    if not items:
        raise DataError(
            f"{name} is empty (0 texts): check the split or filter that produced it (e.g. a "
            f"misspelt domain, or a QUICK-mode slice of size 0)."
        )
    out, not_text, bad_utf8 = [], [], []
    for i, text in enumerate(items):
        if isinstance(text, str):
            out.append(str(text))
        elif isinstance(text, (bytes, bytearray)):
            try:
                out.append(bytes(text).decode("utf-8"))
            except UnicodeDecodeError as err:
                bad_utf8.append((i, err))
        else:
            not_text.append(i)
    if bad_utf8:
        i, err = bad_utf8[0]
        raise DataError(
            f"{name}: text at index {i} is bytes that are not valid UTF-8 ({err.reason} at byte "
            f"{err.start}); {len(bad_utf8)} such text(s) at index {_show([j for j, _ in bad_utf8])}. "
            f"Decode them yourself with the right codec (e.g. raw.decode('latin-1')) or drop them."
        )
    if not_text:
        i = not_text[0]
        kinds = sorted({type(items[j]).__name__ for j in not_text})
        missing = any(_is_missing(items[j]) for j in not_text)
        hint = (" Missing texts (None/NaN) usually come from empty CSV cells: drop them, e.g. "
                "df.dropna(subset=['text']), or read with keep_default_na=False."
                if missing else " Convert them to str or drop them.")
        raise DataError(
            f"{name}: texts must be str (or UTF-8 bytes); {len(not_text)} are not "
            f"({', '.join(kinds)}), first at index {i}: {items[i]!r} (indices "
            f"{_show(not_text)}).{hint}"
        )
    return out


def check_labels(labels, num_classes=None, name="labels", *, label_set=None, n_texts=None):
    """The one label check: class ids in ``[0, num_classes)`` (or in ``label_set``); returns
    int32 (N,).

    Whole floats (1.0) are accepted. ``label_set`` of names (str) maps string labels to their
    position in it. ``n_texts``: the labels must pair up with that many texts. Raises
    ``DataError`` (a ValueError) naming the problem, the offending indices or values, and the fix.
    """
    if num_classes is not None:
        if label_set is not None:
            raise ValueError("Pass num_classes or label_set, not both.")
        label_set = range(int(num_classes))
    items = _as_list(labels, "labels", name)
    if n_texts is None and not items:
        raise DataError(f"{name} is empty: the split has no examples.")
    if n_texts is not None and len(items) != n_texts:
        raise DataError(
            f"{name}: {n_texts} texts but {len(items)} labels; they must pair up one to one. "
            f"Check that texts and labels come from the same rows (same filter, same split)."
        )
    string_set = label_set is not None and all(isinstance(v, str) for v in label_set)
    if label_set is not None and not string_set:
        for v in label_set:
            if (isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral)):
                raise DataError(f"{name}: label_set must hold only ints or only str, got "
                                f"{list(label_set)!r}.")
    ids, missing, fractional, strings, other = [], [], [], [], []
    for i, value in enumerate(items):
        if isinstance(value, (str, np.str_)):
            strings.append(i)
            ids.append(None)
        elif isinstance(value, (bool, np.bool_)):
            ids.append(int(value))
        elif isinstance(value, numbers.Integral):
            ids.append(int(value))
        elif _is_missing(value) or (isinstance(value, numbers.Real) and math.isinf(value)):
            missing.append(i)
            ids.append(None)
        elif isinstance(value, numbers.Real):
            if float(value).is_integer():
                ids.append(int(value))
            else:
                fractional.append(i)
                ids.append(None)
        else:
            other.append(i)
            ids.append(None)
    if missing:
        raise DataError(
            f"{name}: {len(missing)} label(s) are missing (None/NaN) or infinite, first at index "
            f"{missing[0]} (indices {_show(missing)}): every example needs a class id. Drop those "
            f"rows before training, e.g. df.dropna(subset=['label'])."
        )
    if other:
        i = other[0]
        hint = (" One-hot or nested labels? Pass class ids, e.g. np.argmax(labels, axis=-1)."
                if isinstance(items[i], (list, tuple, np.ndarray)) else "")
        raise DataError(
            f"{name}: labels must be integer class ids, got {type(items[i]).__name__} "
            f"{items[i]!r} at index {i} (indices {_show(other)}).{hint}"
        )
    if fractional:
        i = fractional[0]
        raise DataError(
            f"{name}: label {items[i]!r} at index {i} has a fractional part ({len(fractional)} such "
            f"labels, indices {_show(fractional)}); labels must be integer class ids. For a "
            f"rating, derive a class first, e.g. (rating > 0).astype(int), or train a regression "
            f"model on the float targets instead."
        )
    if string_set:
        index = {v: k for k, v in enumerate(label_set)}
        if len(strings) != len(items):
            i = next(j for j, v in enumerate(ids) if v is not None)
            raise DataError(
                f"{name}: label_set is {list(label_set)!r} (names), but label {items[i]!r} at "
                f"index {i} is not a str; pass all labels as names or all as integer ids."
            )
        bad = sorted({str(items[i]) for i in strings if str(items[i]) not in index})
        if bad:
            raise DataError(
                f"{name}: labels {bad} are not in the allowed set {list(label_set)!r}. Fix the "
                f"labels or pass the full label_set."
            )
        return np.asarray([index[str(v)] for v in items], dtype=np.int32)
    if strings:
        i = strings[0]
        examples = sorted({str(items[j]) for j in strings})[:5]
        raise DataError(
            f"{name}: labels are strings (e.g. {examples!r}, first at index {i}) but integer class "
            f"ids are expected. Map them to ids, or pass label_set=[names in id order] (e.g. "
            f"label_set=('negative', 'neutral', 'positive')) to have them mapped."
        )
    if label_set is not None:
        allowed = {int(v) for v in label_set}
        bad = sorted({v for v in ids if v not in allowed})
        if bad:
            where = [i for i, v in enumerate(ids) if v not in allowed]
            if num_classes is not None:
                what, fix = (f"label set 0..{int(num_classes) - 1}",
                             "build the classifier with a larger num_classes")
            else:
                what, fix = (f"allowed set {sorted(allowed)}",
                             "widen label_set (and the model's number of classes)")
            raise DataError(
                f"{name}: label values {bad} are outside the {what} (indices {_show(where)}). "
                f"Fix the labels, or {fix}."
            )
    else:
        negative = [i for i, v in enumerate(ids) if v < 0]
        if negative:
            raise DataError(
                f"{name}: labels must be non-negative class ids; {ids[negative[0]]} at index "
                f"{negative[0]} (indices {_show(negative)}). Drop unlabeled rows or remap the ids."
            )
    too_big = [i for i, v in enumerate(ids) if v > np.iinfo(np.int32).max]
    if too_big:
        raise DataError(f"{name}: label {ids[too_big[0]]} at index {too_big[0]} does not fit int32.")
    return np.asarray(ids, dtype=np.int32)


def check_texts_labels(texts, labels=None, label_set=None, name="dataset"):
    """Validate texts (and labels) before training; returns ``(list_of_str, int32 array or None)``.

    Texts must be str, or bytes that are valid UTF-8 (decoded). Labels must be integer class ids
    (whole floats such as 1.0 are accepted); with ``label_set`` given they must lie in it. If
    ``label_set`` holds names (str), string labels are mapped to their position in it. Raises
    ``DataError`` naming the problem, the offending indices or values, and the fix.
    """
    out_texts = _check_texts(texts, name)
    if labels is None:
        return out_texts, None
    return out_texts, check_labels(labels, label_set=label_set, n_texts=len(out_texts),
                                   name=name)



def check_ids_fit(token_ids, vocabulary_size=None, max_sequence_length=None, name="token ids"):
    """Raise ValueError unless ``token_ids`` can go into a model: a non-empty 2-D integer array
    (N, S) with ids in [0, vocabulary_size) and S <= max_sequence_length (each check only when
    its bound is given). Returns the ids as an int32 array."""
    ids = np.asarray(token_ids)
    if ids.dtype.kind in "UOS":  # a str, a list of str, or an array of them
        raise ValueError(
            f"{name} have dtype {ids.dtype} (text?): encode the texts first with "
            f"tok.encode(texts, sequence_length=...), or use models.TextClassifier.")
    if ids.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (examples, sequence length), got shape "
                         f"{ids.shape}: encode a list of texts, not one text.")
    if ids.size == 0:
        raise ValueError(f"{name} are empty (shape {ids.shape}): there is nothing to train on.")
    if ids.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be integers, got dtype {ids.dtype}: pass the int32 array that "
            f"tok.encode returns (ids.astype('int32') if they are whole numbers).")
    low, top = int(ids.min()), int(ids.max())
    if low < 0:
        raise ValueError(f"{name} contain {low}: ids are row numbers of the embedding table, "
                         f"0 or more.")
    if vocabulary_size is not None and top >= vocabulary_size:
        raise ValueError(
            f"Token id {top} does not fit the model's embedding table of {vocabulary_size} rows: "
            f"the vocabulary and the model do not match. Build the model with "
            f"vocabulary_size=len(vocab), or encode with the vocabulary the model was trained on."
        )
    if max_sequence_length is not None and ids.shape[1] > max_sequence_length:
        raise ValueError(
            f"{name} are {ids.shape[1]} tokens long but the model takes at most "
            f"{max_sequence_length} (its max_sequence_length): encode with "
            f"sequence_length={max_sequence_length} or less, or build the backbone with a larger "
            f"max_sequence_length.")
    return ids.astype("int32")
