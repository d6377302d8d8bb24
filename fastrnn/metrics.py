"""Evaluation metrics: perplexity, exact-match accuracy, BLEU.

BLEU follows sacreBLEU's corpus BLEU (clipped n-gram precisions up to 4, closest reference
length for the brevity penalty, ties to the shorter reference, the same smoothing methods) on
pre-tokenized input, so ``corpus_bleu`` equals ``sacrebleu.corpus_bleu(..., tokenize="none")``
on the space-joined tokens; sacrebleu is only a test oracle, never a dependency.
"""
import math
from collections import Counter

import numpy as np

SMOOTH_DEFAULTS = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}


def perplexity(mean_loss):
    """exp of a mean per-token cross-entropy (natural log)."""
    return float(math.exp(min(float(mean_loss), 700.0)))


def exact_match_accuracy(pred, target, ignore_id=None):
    """Fraction of rows of pred that equal target in every position. pred and target (N, T) ids;
    positions where target == ignore_id do not count."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {pred.shape}, target {target.shape}: they must match")
    if pred.shape[0] == 0:
        return 0.0
    eq = pred == target
    if ignore_id is not None:
        eq |= target == ignore_id
    return float(eq.reshape(len(eq), -1).all(axis=1).mean())


def _ngrams(tokens, max_order):
    c = Counter()
    for n in range(1, max_order + 1):
        for i in range(len(tokens) - n + 1):
            c[tuple(tokens[i:i + n])] += 1
    return c


def bleu_stats(hypothesis, references, max_order=4):
    """(correct[n], total[n], hyp_len, ref_len) for one sentence: token lists."""
    hyp = list(hypothesis)
    refs = [list(r) for r in references]
    if not refs:
        raise ValueError("each hypothesis needs at least one reference")
    hyp_len = len(hyp)
    ref_len, best = None, None
    max_ref = Counter()
    for r in refs:
        diff = abs(len(r) - hyp_len)
        if best is None or diff < best or (diff == best and len(r) < ref_len):
            best, ref_len = diff, len(r)
        for g, k in _ngrams(r, max_order).items():
            if k > max_ref[g]:
                max_ref[g] = k
    correct = [0] * max_order
    total = [max(0, hyp_len - n) for n in range(max_order)]
    for g, k in _ngrams(hyp, max_order).items():
        correct[len(g) - 1] += min(k, max_ref.get(g, 0))
    return correct, total, hyp_len, ref_len


def bleu_from_stats(correct, total, sys_len, ref_len, smooth="exp", smooth_value=None,
                    max_order=4, effective_order=False):
    """BLEU in [0, 100] from summed statistics (sacreBLEU's compute_bleu)."""
    if smooth not in SMOOTH_DEFAULTS:
        raise ValueError(f"unknown smoothing {smooth!r}; expected one of {list(SMOOTH_DEFAULTS)}")
    if smooth_value is None:
        smooth_value = SMOOTH_DEFAULTS[smooth]
    correct, total = list(correct), list(total)
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    else:
        bp = 1.0
    if not any(correct):
        return 0.0
    precisions = [0.0] * max_order
    smooth_mteval = 1.0
    eff_order = max_order
    for n in range(1, max_order + 1):
        if smooth == "add-k" and n > 1:
            correct[n - 1] += smooth_value
            total[n - 1] += smooth_value
        if total[n - 1] == 0:
            break
        if effective_order:
            eff_order = n
        if correct[n - 1] == 0:
            if smooth == "exp":
                smooth_mteval *= 2
                precisions[n - 1] = 100.0 / (smooth_mteval * total[n - 1])
            elif smooth == "floor":
                precisions[n - 1] = 100.0 * smooth_value / total[n - 1]
        else:
            precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1]
    # a zero precision makes the geometric mean (practically) zero, as in sacreBLEU
    logs = [math.log(p) if p > 0 else -9999999999 for p in precisions[:eff_order]]
    return bp * math.exp(sum(logs) / eff_order)


def corpus_bleu(hypotheses, references, max_order=4, smooth="exp", smooth_value=None):
    """Corpus BLEU in [0, 100]. hypotheses: list of token lists (or strings, split on spaces);
    references: a list with, per hypothesis, either one token list/string or a list of them."""
    hypotheses = list(hypotheses)
    references = list(references)
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    correct, total = [0] * max_order, [0] * max_order
    sys_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        c, t, h, r = bleu_stats(_tok(hyp), _ref_list(refs), max_order)
        correct = [a + b for a, b in zip(correct, c)]
        total = [a + b for a, b in zip(total, t)]
        sys_len += h
        ref_len += r
    return bleu_from_stats(correct, total, sys_len, ref_len, smooth, smooth_value, max_order)


def sentence_bleu(hypothesis, references, max_order=4, smooth="exp", smooth_value=None):
    """Sentence BLEU in [0, 100] with effective order (as sacreBLEU's sentence_bleu)."""
    c, t, h, r = bleu_stats(_tok(hypothesis), _ref_list(references), max_order)
    return bleu_from_stats(c, t, h, r, smooth, smooth_value, max_order, effective_order=True)


def _tok(s):
    return s.split() if isinstance(s, str) else list(s)


def _ref_list(refs):
    if isinstance(refs, str):
        return [refs.split()]
    refs = list(refs)
    if refs and all(isinstance(r, str) for r in refs) and not _is_token_list(refs):
        return [r.split() for r in refs]
    if refs and isinstance(refs[0], (list, tuple)):
        return [list(r) for r in refs]
    return [refs]


def _is_token_list(refs):
    # a list of strings without spaces is one tokenized reference, with spaces several raw ones
    return all(" " not in r for r in refs)
