"""Tables, performance targets, JSON and the chart of the benchmarks.

Targets are printed pass/fail by the benchmark run (one run, medians); they are never asserted
by the test suite, whose machine and load are unknown.
"""
import math

from . import harness as hn
from .columns import FASTRNN_COLUMNS, make_lengths, matrix_flops


# ------------------------------------------------------------------------------- assembling
def merge(column_rows, settings_key, peak_gflops, fast=FASTRNN_COLUMNS, rival="torch"):
    """Per-column rows -> one row per (cell, mode, size) with every column's time, the FLOP
    limit (matrix FLOPs at the sgemm peak of the same setting) and the ratios of each ``fast``
    column to ``rival`` and to the limit. ``lengths`` rows also get ``fill`` (sum of the
    lengths / N*T) and, per column, ``{c}_with_vs_without``: its lengths time / its fwdbwd
    time on the same cell and size."""
    merged, order = {}, []
    for col, rows in column_rows.items():
        for r in rows:
            key = (r["cell"], r["mode"], r["label"])
            if key not in merged:
                order.append(key)
                size = tuple(r["size"].values())
                flops = matrix_flops(r["cell"], size, r["mode"])
                merged[key] = {"setting": settings_key, "cell": r["cell"], "mode": r["mode"],
                               "label": r["label"], "size": r["size"], "flops": flops,
                               "limit_s": flops / (peak_gflops * 1e9) if peak_gflops else None,
                               "times_s": {}, "errors": {}, "spread": {}, "samples_s": {},
                               "check_err": {}}
            m = merged[key]
            if r.get("error"):
                m["errors"][col] = r["error"]
                continue
            m["times_s"][col] = r["time_s"]
            m["spread"][col], m["samples_s"][col] = r["spread"], r["samples_s"]
            if r.get("check_err") is not None:
                m["check_err"][col] = r["check_err"]
    rows = [merged[k] for k in order]
    for r in rows:
        t = r["times_s"]
        r["ratios"] = {f"{rival}_vs_limit": hn.ratio(t.get(rival), r["limit_s"])}
        for c in fast:
            r["ratios"][f"{c}_vs_{rival}"] = hn.ratio(t.get(rival), t.get(c))
            r["ratios"][f"{c}_vs_limit"] = hn.ratio(t.get(c), r["limit_s"])
        if r["mode"] == "lengths":
            size = tuple(r["size"].values())
            r["fill"] = float(make_lengths(size).sum()) / (size[0] * size[1])
            full = merged.get((r["cell"], "fwdbwd", r["label"]), {}).get("times_s", {})
            for c in t:
                r["ratios"][f"{c}_with_vs_without"] = hn.ratio(t[c], full.get(c))
    return rows


def wrong_results(rows):
    return [(r["cell"], r["label"], r["mode"], c, e) for r in rows
            for c, e in r["errors"].items() if e.startswith("WRONG RESULT")]


# ---------------------------------------------------------------------------------- printing
def print_cells(rows, columns, title, out=print, fast=FASTRNN_COLUMNS, rival="torch"):
    fast = [c for c in fast if c in columns]
    for mode in ("fwdbwd", "fwd"):
        mrows = [r for r in rows if r["mode"] == mode]
        if not mrows:
            continue
        out("")
        out(f"### {title}: {'forward + backward' if mode == 'fwdbwd' else 'forward only'} "
            f"(median ms)")
        out("")
        head = ["cell", "N x T x D x H"] + [f"{c} ms" for c in columns] + ["FLOP limit ms"] + \
            [f"{c} x {rival}" for c in fast] + [f"{c} / limit" for c in fast] + \
            [f"{rival} / limit"]
        out("| " + " | ".join(head) + " |")
        out("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
        for r in mrows:
            t = r["times_s"]
            cells = [r["cell"], r["label"]]
            cells += [hn.fmt_ms(t[c]) + ("~" if hn.noisy(r["spread"].get(c)) else "")
                      if t.get(c) is not None else ("err" if c in r["errors"] else "-")
                      for c in columns]
            cells.append(hn.fmt_ms(r["limit_s"]))
            cells += [hn.fmt_ratio(r["ratios"][f"{c}_vs_{rival}"]) for c in fast]
            cells += [hn.fmt_ratio(r["ratios"][f"{c}_vs_limit"]) for c in fast]
            cells.append(hn.fmt_ratio(r["ratios"][f"{rival}_vs_limit"]))
            out("| " + " | ".join(cells) + " |")
    out("")
    out(f"x {rival}: {rival} time / fastrnn time (> 1: fastrnn faster). / limit: time / FLOP "
        f"limit (matrix FLOPs 6*N*T*G*H*(D+H) fwd+bwd, 2*... fwd, at the sgemm peak of this "
        f"run). ~: interquartile range over 25% of the median.")
    errs = {}
    for r in rows:
        for c, e in r["errors"].items():
            errs.setdefault((c, e), []).append(f"{r['cell']} {r['label']}")
    for (c, e), where in errs.items():
        out(f"- column {c} not timed ({len(set(where))} cell/size pairs): {e}")
    print_lengths(rows, columns, title, out, fast, rival)


def print_lengths(rows, columns, title, out, fast, rival):
    """The lengths table: each column's time with the lengths, its ratio to its own full-T
    fwd+bwd, and each ``fast`` column against ``rival`` through packed sequences."""
    lrows = [r for r in rows if r["mode"] == "lengths"]
    if not lrows:
        return
    cols = [c for c in columns if any(c in r["times_s"] or c in r["errors"] for r in lrows)]
    out("")
    out(f"### {title}: forward + backward with random lengths in [T/2, T] (median ms)")
    out("")
    head = ["cell", "N x T x D x H", "fill"] + [f"{c} ms" for c in cols] + \
        [f"{c} with/without" for c in cols] + [f"{c} x {rival} packed" for c in fast]
    out("| " + " | ".join(head) + " |")
    out("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
    for r in lrows:
        t = r["times_s"]
        cells = [r["cell"], r["label"], f"{r['fill']:.2f}"]
        cells += [hn.fmt_ms(t[c]) + ("~" if hn.noisy(r["spread"].get(c)) else "")
                  if t.get(c) is not None else ("err" if c in r["errors"] else "-")
                  for c in cols]
        cells += [hn.fmt_ratio(r["ratios"].get(f"{c}_with_vs_without")) for c in cols]
        cells += [hn.fmt_ratio(r["ratios"][f"{c}_vs_{rival}"]) for c in fast]
        out("| " + " | ".join(cells) + " |")
    out("")
    out(f"fill: sum of the lengths / (N*T), the share of steps left to compute. with/without: "
        f"the column's time with the lengths / its fwd+bwd time on the full T (the "
        f"forward + backward table). x {rival} packed: {rival} through "
        f"pack_padded_sequence / fastrnn with the lengths (> 1: fastrnn faster).")


# ----------------------------------------------------------------------------------- targets
def target(name, items):
    """items: [(label, value, ok)] with ok a bool or None when value is None."""
    have = [(lab, v, ok) for lab, v, ok in items if v is not None]
    if not have:
        return {"target": name, "status": "not measured", "values": {}, "failing": {}}
    failing = {lab: v for lab, v, ok in have if not ok}
    return {"target": name, "status": "FAIL" if failing else "pass",
            "values": {lab: v for lab, v, _ in have}, "failing": failing}


def cell_targets(rows):
    out = []
    fb = [r for r in rows if r["mode"] == "fwdbwd"]
    lab = lambda r: f"{r['cell']} {r['label']}"  # noqa: E731
    for c in FASTRNN_COLUMNS:
        if not any(r["times_s"].get(c) for r in fb):
            continue
        vt = lambda r: r["ratios"][f"{c}_vs_torch"]  # noqa: E731
        out.append(target(f"{c}: GRU (both forms) and RNN fwd+bwd >= 1.2x torch",
                           [(lab(r), vt(r), (vt(r) or 0) >= 1.2) for r in fb
                            if r["cell"] != "lstm"]))

        def lstm_need(r):
            eff = r["ratios"]["torch_vs_limit"]
            return 1.2 if eff and 1 / eff < 0.65 else 1.0
        out.append(target(f"{c}: LSTM fwd+bwd >= 1.0x torch (1.2x where torch < 65% of the "
                           f"FLOP limit)", [(lab(r), vt(r), (vt(r) or 0) >= lstm_need(r))
                                            for r in fb if r["cell"] == "lstm"]))
        vl = lambda r: r["ratios"][f"{c}_vs_limit"]  # noqa: E731
        out.append(target(f"{c}: within 1.3x of the FLOP limit where N*H >= 10000",
                           [(lab(r), vl(r), (vl(r) or math.inf) <= 1.3) for r in fb
                            if r["size"]["N"] * r["size"]["H"] >= 10000]))
    return out


def train_targets(train):
    out = []
    models = train.get("models", [])
    several = len({m["setting"] for m in models}) > 1
    for c in FASTRNN_COLUMNS:
        items_t, items_b = [], []
        for m in models:
            t = m["times_s"]
            if t.get(c) is None:
                continue
            name = f"{m['name']} [{m['setting']}]" if several else m["name"]
            need_b = 2.0 if m["kind"] == "seq2seq" else 2.5
            vb = hn.ratio(t.get("textbook"), t[c])
            items_b.append((f"{name} (>= {need_b}x)", vb, (vb or 0) >= need_b))
            if m["kind"] != "seq2seq":
                vt = hn.ratio(t.get("torch"), t[c])
                items_t.append((name, vt, (vt or 0) >= 1.2))
        if items_t or items_b:
            out.append(target(f"{c}: training step >= 1.2x torch", items_t))
            out.append(target(f"{c}: training step >= 2.5x the textbook layers (seq2seq 2x)",
                               items_b))
    return out


LOAD_LIMITS = {"busy1": 2.5, "busy2": 3.5, "twin": 2.5}


def load_targets(load):
    out = []
    for entry in load or []:
        modes = entry.get("modes", {})
        idle = modes.get("idle", {}).get("median_s")
        name = f"{entry['column']} {entry['model']} ({entry['setting']})"
        out.append(target(f"{name}: step under load <= 2.5x idle (1 busy loop, a second "
                           f"training), 3.5x (2 busy loops)",
                           [(k, hn.ratio(modes[k].get("median_s"), idle),
                             (hn.ratio(modes[k].get("median_s"), idle) or 0) <= lim)
                            for k, lim in LOAD_LIMITS.items() if k in modes]))
        out.append(target(f"{name}: no heavy tail (p90 <= 1.5x median under load)",
                           [(k, hn.ratio(v.get("p90_s"), v.get("median_s")),
                             (hn.ratio(v.get("p90_s"), v.get("median_s")) or 0) <= 1.5)
                            for k, v in modes.items() if k != "idle"]))
    return out


def cold_targets(cold):
    items = [(k, v.get("total_s"), (v.get("total_s") or math.inf) < 1.0)
             for k, v in (cold or {}).items() if k == "empty_cache"]
    return [target("cold start: import + first LSTM fwd+bwd after install < 1 s", items)]


def print_targets(targets, out=print):
    if not targets:
        return
    out("")
    out("Performance targets (one run, medians; informational, never a test):")
    for t in targets:
        extra = ""
        if t["status"] == "FAIL":
            worst = list(t["failing"].items())
            extra = "; failing: " + ", ".join(f"{k} {v:.2f}" for k, v in worst[:6]) + \
                (f" (+{len(worst) - 6} more)" if len(worst) > 6 else "")
        out(f"- [{t['status']}] {t['target']}{extra}")


# ------------------------------------------------------------------------------------- chart
CHART_LABELS = {"reference": "reference (NumPy loop)", "numba": "fastrnn numba",
                "cpu": "fastrnn cpu", "torch": "PyTorch", "gemm": "GEMMs alone"}


def chart(rows, columns, path, title):
    """PNG: fwd+bwd median per cell and size (log ms), one panel per cell, every timed column
    and the FLOP limit."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fb = [r for r in rows if r["mode"] == "fwdbwd"]
    cells = list(dict.fromkeys(r["cell"] for r in fb))
    if not cells:
        return None
    fig, axes = plt.subplots(1, len(cells), figsize=(4.2 * len(cells), 4.2), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        crow = [r for r in fb if r["cell"] == cell]
        x = range(len(crow))
        for c in columns:
            ys = [r["times_s"].get(c) for r in crow]
            if any(ys):
                ax.plot(x, [y * 1e3 if y else float("nan") for y in ys], "o-",
                        label=CHART_LABELS.get(c, c))
        ax.plot(x, [r["limit_s"] * 1e3 if r["limit_s"] else float("nan") for r in crow], "k--",
                label="FLOP limit")
        ax.set_xticks(list(x), [r["label"] for r in crow], rotation=45, ha="right",
                      fontsize=7)
        ax.set_yscale("log")
        ax.set_title(f"{cell}, fwd+bwd")
        ax.set_ylabel("ms (median)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
