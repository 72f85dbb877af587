"""Targets and markdown tables of the comparison suites (arrays, iterator, training)."""
from __future__ import annotations

from .loop import NATIVE, NO_MIXING

NOT_MEASURED_ON_GPU = "not measured on GPU"
TIMM_PREFIX = "in loop: timm"


def _ms(s) -> str:
    return "-" if s is None else f"{s * 1e3:.3g}"


def _x(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def find_config(res: dict, role: str) -> dict | None:
    it = res.get("iterator")
    if not isinstance(it, list):
        return None
    return next((c for c in it if c.get("role") == role), None)


def row(cfg: dict | None, variant: str) -> dict | None:
    if cfg is None:
        return None
    for r in cfg["rows"]:
        if r["variant"] == variant or (variant == TIMM_PREFIX and r["variant"].startswith(TIMM_PREFIX)):
            return r
    return None


def _target(name, value, limit, note=None) -> dict:
    if value is None:
        return {"target": name, "value": None, "limit": limit, "met": None,
                "note": note or "not measured (or the reference added no measurable time: noise)"}
    return {"target": name, "value": value, "limit": limit, "met": bool(value <= limit), "note": note}


def _verdict(floors_s: float, limit_s: float) -> str:
    if floors_s > limit_s:
        return f"the floors alone ({_ms(floors_s)} ms) exceed the limit ({_ms(limit_s)} ms)"
    return f"the floors ({_ms(floors_s)} ms) fit in the limit ({_ms(limit_s)} ms)"


def matching_floor_s(res: dict, cfg: dict, k: int = 16) -> float | None:
    """k-mixup's matching over mixup: one more read of the batch (at the copy bandwidth) or the
    Gram products of the disjoint halves, ``2 (B/2) k D`` flops at the sgemm peak, the larger."""
    fl = res.get("floor")
    if not isinstance(fl, dict):
        return None
    b, d = cfg["B"], 3 * cfg["image_size"] ** 2
    nbytes = b * d * 4
    return max(nbytes / (fl["bandwidth_GBps"] * 1e9), 2.0 * (b // 2) * min(k, b // 2) * d / (fl["sgemm_GFLOPs"] * 1e9))


def comparison_targets(res: dict) -> list:
    """The targets on the time each variant adds to the no-mixing pipeline; each says what the
    floors measured in the same run account for, and whether they alone exceed the limit."""
    out = []
    large, small = find_config(res, "large"), find_config(res, "small")
    # 1. large batch: fn.mixup vs in-loop timm-style mixup
    m, t = row(large, "fn.mixup"), row(large, TIMM_PREFIX)
    v = m["added_s"] / t["added_s"] if m and t and t["added_s"] > 0 else None
    fl = large["floors"] if large else None
    note = None
    if v is not None:
        py = fl["python_operator_floor_added_s"]
        floors = max(py, 0.0) + fl["blend_memory_floor_s"]
        note = (f"fn.mixup adds {_ms(m['added_s'])} ms, in-loop timm-style {_ms(t['added_s'])} ms; python-operator "
                f"floor {_ms(py)} ms + blend memory floor {_ms(fl['blend_memory_floor_s'])} ms: "
                + _verdict(floors, 0.8 * t["added_s"]))
    out.append(_target(_name(large, "fn.mixup adds <= 0.8x what in-loop timm-style mixup adds"), v, 0.8, note))
    # 2. large batch: fn.k_mixup vs fn.mixup
    k = row(large, "fn.k_mixup(k=16)")
    v = k["added_s"] / m["added_s"] if k and m and m["added_s"] > 0 else None
    note = None
    if v is not None:
        mf = matching_floor_s(res, large)
        note = (f"fn.k_mixup adds {_ms(k['added_s'])} ms, fn.mixup {_ms(m['added_s'])} ms: the matching costs "
                f"{_ms(k['added_s'] - m['added_s'])} ms; its floor (one more read of the batch, or the Gram "
                f"flops at the sgemm peak) is {_ms(mf)} ms, the limit leaves it {_ms(0.2 * m['added_s'])} ms"
                + ("" if mf is None else ": " + ("the matching floor alone exceeds it" if mf > 0.2 * m["added_s"]
                                                 else "the floor fits")))
    out.append(_target(_name(large, "fn.k_mixup adds <= 1.2x what fn.mixup adds"), v, 1.2, note))
    # 3. small batch: fn.mixup vs the python-operator floor
    m = row(small, "fn.mixup")
    fl = small["floors"] if small else None
    py = fl["python_operator_floor_added_s"] if fl else None
    v = m["added_s"] / py if m and py and py > 0 else None
    note = None
    if v is not None:
        note = (f"fn.mixup adds {_ms(m['added_s'])} ms = python-operator floor {_ms(py)} ms + "
                f"{_ms(m['added_s'] - py)} ms; with the blend memory floor ({_ms(fl['blend_memory_floor_s'])} ms) "
                + _verdict(py + fl["blend_memory_floor_s"], 1.2 * py)
                + f"; the operator's own work beyond both: {_ms(m['added_s'] - py - fl['blend_memory_floor_s'])} ms")
    out.append(_target(_name(small, "fn.mixup adds <= 1.2x the python-operator floor"), v, 1.2, note))
    # pipeline ratios at the small batch
    k, n = row(small, "fn.k_mixup(k=16)"), row(small, NATIVE)
    out.append(_target(_name(small, "pipeline with fn.k_mixup / with DALI-native mixup <= 1.3"),
                       k["time_per_batch_s"] / n["time_per_batch_s"] if k and n else None, 1.3))
    out.append(_target(_name(small, "pipeline with fn.k_mixup / no mixing <= 2"),
                       k["over_no_mixing"] if k else None, 2.0))
    return out


def _name(cfg, text: str) -> str:
    if cfg is None:
        return text
    return f"{cfg['image_size']}x{cfg['image_size']} B={cfg['B']}: {text}"


def floors_markdown(res: dict) -> list:
    lines = ["## Floors", ""]
    fl = res.get("floor")
    if isinstance(fl, dict):
        end = res.get("floor_end") or {}
        lines += [f"Copy bandwidth (read + write) measured at the start of the run **{fl['bandwidth_GBps']:.1f} GB/s**"
                  + (f", at the end **{end['bandwidth_GBps']:.1f} GB/s**" if end else "")
                  + " (the difference is the machine's noise); sgemm "
                  f"{fl['sgemm_GFLOPs']:.0f} GFLOP/s.", ""]
    it = res.get("iterator")
    if isinstance(it, list):
        lines += ["Per batch, in the same run: the **blend memory floor** (two batches read, one written, at "
                  "the copy bandwidth); the **python-operator floor** (what an identity `python_function` with "
                  "`fn.mixup`'s inputs and outputs adds to the no-mixing pipeline: DALI's per-sample "
                  "conversions and copies, no mixing at all); **DALI's own per-operator cost** (what one "
                  "metadata-only `fn.reshape` adds).", "",
                  "| batch | blend memory floor ms | python-operator floor ms | DALI per-operator ms | "
                  "no-mixing pipeline ms |", "|---|---|---|---|---|"]
        for c in it:
            f = c["floors"]
            lines.append(f"| {c['image_size']}x{c['image_size']} B={c['B']} | {_ms(f['blend_memory_floor_s'])} | "
                         f"{_ms(f['python_operator_floor_added_s'])} | {_ms(f['dali_per_operator_added_s'])} | "
                         f"{_ms(row(c, NO_MIXING)['time_per_batch_s'])} |")
    lines.append("")
    return lines


def targets_markdown(targets: list) -> list:
    lines = ["## Targets", "", "| target | measured | limit | met | what the floors say |", "|---|---|---|---|---|"]
    for t in targets:
        met = "not measured" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {_x(t['value'])} | {_x(t['limit'])} | {met} | {t.get('note') or ''} |")
    lines.append("")
    return lines


def arrays_markdown(res: dict, gpu: bool) -> list:
    lines = ["## 1. Array level: time per batch (one call on a batch in memory)", ""]
    ar = res.get("arrays")
    if not isinstance(ar, list):
        return lines + [str(ar), ""]
    gcol = "" if gpu else " GPU ms |"
    for c in ar:
        lines += [f"### {c['image_size']}x{c['image_size']}, B={c['B']} "
                  f"(blend memory floor {_ms(c['blend_memory_floor_s'])} ms)", "",
                  f"| mixing | source | ms/batch | x blend memory floor |{gcol}",
                  "|---|---|---|---|" + ("" if gpu else "---|")]
        for r in c["rows"]:
            lines.append(f"| {r['label']} | {r['source']} | {_ms(r['time_s'])} | {_x(r['over_blend_memory_floor'])} |"
                         + ("" if gpu else f" {NOT_MEASURED_ON_GPU} |"))
        lines.append("")
    return lines


def iterator_markdown(res: dict, gpu: bool) -> list:
    lines = ["## 2. Per batch through DALIGenericIterator into the loop", "",
             "Pipeline: file reader, image decoder, `crop_mirror_normalize` (CHW float32, random mirror). "
             "`pipeline` rows mix in DALI; `loop` rows take the no-mixing pipeline's batches and mix them in "
             "the loop. `added` is the time over the no-mixing pipeline; the last columns put it against the "
             "python-operator floor and the blend memory floor of the same batch.", ""]
    it = res.get("iterator")
    if not isinstance(it, list):
        return lines + [str(it), ""]
    gcol = "" if gpu else " GPU ms/batch |"
    for c in it:
        lines += [f"### {c['image_size']}x{c['image_size']}, B={c['B']}", "",
                  f"decoder `{c['decoder']}`, {c['num_threads']} DALI threads, {c['n_images']} JPEG files, "
                  f"prefetch depth {c['prefetch_queue_depth']}, {c['batches_per_block']} batches per block, "
                  f"median of {c['rows'][0]['n_blocks']} blocks.", "",
                  "| variant | where | ms/batch [min-max] | x no mixing | added ms | added / python-operator floor "
                  f"| added / blend memory floor |{gcol}", "|---|---|---|---|---|---|---|" + ("" if gpu else "---|")]
        for r in c["rows"]:
            lines.append(f"| {r['variant']} | {r['where']} | {_ms(r['time_per_batch_s'])} [{_ms(r['min_s'])}-"
                         f"{_ms(r['max_s'])}] | {_x(r['over_no_mixing'])} | {_ms(r['added_s'])} | "
                         f"{_x(r['added_over_python_floor'])} | {_x(r['added_over_blend_memory_floor'])} |"
                         + ("" if gpu else f" {NOT_MEASURED_ON_GPU} |"))
        lines.append("")
    return lines


def training_markdown(res: dict, gpu: bool) -> list:
    lines = ["## 3. Training throughput", "",
             "One SGD step (momentum 0.9) per batch, soft-label cross-entropy (kornia: its two-term loss), "
             "torch (its default threads) on the same cores as DALI. The pipeline runs ahead of the loop, so "
             "in-pipeline work is hidden only where a core is free for it: a python operator runs in DALI's "
             "thread and holds the GIL for its Python parts (dali-mixup keeps NumPy's own BLAS at one thread, "
             "so its idle threads do not spin against torch's).", ""]
    tr = res.get("training")
    if not isinstance(tr, list):
        return lines + [str(tr), ""]
    gcol = "" if gpu else " GPU images/s |"
    for c in tr:
        lines += [f"### {c['model_label']}, {c['image_size']}x{c['image_size']}, B={c['B']}", "",
                  f"torch threads {c['torch_threads']}, {c['steps_per_block']} steps per block, median of "
                  f"{c['rows'][0]['n_blocks']} blocks.", "",
                  f"| variant | where | images/s | ms/step | step time x no mixing |{gcol}",
                  "|---|---|---|---|---|" + ("" if gpu else "---|")]
        for r in c["rows"]:
            lines.append(f"| {r['variant']} | {r['where']} | {r['images_per_s']:.0f} | {_ms(r['time_per_step_s'])} | "
                         f"{_x(r['over_no_mixing'])} |" + ("" if gpu else f" {NOT_MEASURED_ON_GPU} |"))
        lines.append("")
    return lines


def sources_markdown(res: dict) -> list:
    """Which peers are the libraries and which are re-implementations, as measured here."""
    ar = res.get("arrays")
    if not isinstance(ar, list) or not ar:
        return []
    lines = ["## Peers", "", "| peer | source |", "|---|---|"]
    for r in ar[0]["rows"]:
        if r["source"] in ("library", "re-implementation", "reconstruction"):
            lines.append(f"| {r['label']} | {r['source']} |")
    if not any(r["label"].startswith("kornia") for r in ar[0]["rows"]):
        lines.append("| kornia RandomMixUpV2 / RandomCutMixV2 | not installed: `pip install -e \".[bench]\"` |")
    lines += ["", "`re-implementation`: the library's exact operations and random draws, written in "
              "`benchmarks/peers.py` because the library does not import beside this torch; `reconstruction`: "
              "the authors' procedure after their paper and code, not their code.", ""]
    return lines
