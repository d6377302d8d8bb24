"""Token <-> id vocabulary with JSON save/load."""
import json
import os
from collections import Counter

import numpy as np

UNK = "<unk>"
EOS = "<eos>"


class Vocab:
    """Ids are given in order of first appearance, so the same text always gives the same ids
    (the textbook convention; PTB's ids then match published preprocessing scripts).

    ``min_freq`` > 1 maps rarer tokens to ``<unk>``; ``<unk>`` is then added (first) if absent.
    """

    def __init__(self, tokens=(), min_freq=1, reserved=()):
        self.id_to_token = []
        self.token_to_id = {}
        tokens = list(tokens)
        if min_freq > 1:
            counts = Counter(tokens)
            reserved = (UNK,) + tuple(t for t in reserved if t != UNK)
            tokens = [t for t in tokens if counts[t] >= min_freq]
        for t in reserved:
            self.add(t)
        for t in tokens:
            self.add(t)

    def add(self, token):
        i = self.token_to_id.get(token)
        if i is None:
            i = len(self.id_to_token)
            self.token_to_id[token] = i
            self.id_to_token.append(token)
        return i

    def __len__(self):
        return len(self.id_to_token)

    def __contains__(self, token):
        return token in self.token_to_id

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.id_to_token == other.id_to_token

    def __repr__(self):
        return f"Vocab(size={len(self)})"

    @property
    def unk_id(self):
        return self.token_to_id.get(UNK)

    def encode(self, tokens, unknown="error"):
        """Token sequence -> int32 array. ``unknown``: "error" (KeyError naming the token),
        "unk" (map to <unk>, which must exist), or "skip"."""
        out = []
        unk = self.unk_id
        for t in tokens:
            i = self.token_to_id.get(t)
            if i is None:
                if unknown == "skip":
                    continue
                if unknown == "unk" and unk is not None:
                    i = unk
                else:
                    raise KeyError(f"token {t!r} is not in the vocabulary")
            out.append(i)
        return np.asarray(out, dtype=np.int32)

    def decode(self, ids, sep=""):
        return sep.join(self.id_to_token[int(i)] for i in ids)

    def to_dict(self):
        return {"tokens": list(self.id_to_token)}

    @classmethod
    def from_dict(cls, d):
        v = cls()
        for t in d["tokens"]:
            v.add(t)
        if len(v) != len(d["tokens"]):
            raise ValueError("vocabulary file lists a token twice")
        return v

    def save(self, path):
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))
