"""Benchmark rows as a markdown table (with the paper's numbers), JSON, and a PNG plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import UsageError
from .harness import BenchRow, rows_to_dicts
from .paper import paper_row


def _f(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def hq_cost(rows: list[BenchRow]) -> list[tuple[str, str, str, float, float]]:
    """(backbone, backend, precision, our HQ/SAM e2e latency ratio, the paper's FPS ratio SAM/HQ)."""
    out = []
    by_key = {(r.backbone, r.variant, r.backend, r.precision, "official" in r.model): r for r in rows if not r.error}
    for (backbone, variant, backend, precision, official), hq in by_key.items():
        sam = by_key.get((backbone, "sam", backend, precision, official))
        if variant != "hq" or sam is None:
            continue
        paper = paper_row(backbone, "sam").fps / paper_row(backbone, "hq").fps
        name = backend + (" (official)" if official else "")
        out.append((backbone, name, precision, hq.e2e_ms / sam.e2e_ms, paper))
    return out


def precision_speedups(rows: list[BenchRow]) -> list[tuple[BenchRow, float, float]]:
    """(row, encoder speed-up, end-to-end speed-up) of each fp16 / int8 row over the fp32 row of the same
    model, backend and folder, both measured in this run."""
    fp32 = {(r.model, r.backend, r.folder): r for r in rows if r.precision == "fp32" and not r.error}
    out = []
    for r in rows:
        base = fp32.get((r.model, r.backend, r.folder))
        if r.precision != "fp32" and not r.error and base is not None:
            out.append((r, base.encoder_ms / r.encoder_ms, base.e2e_ms / r.e2e_ms))
    return out


def markdown(rows: list[BenchRow]) -> str:
    """Rows next to the paper's Table 10, then the cost of HQ per backbone."""
    machines = sorted({r.machine.get("summary", "") for r in rows if r.machine.get("summary")})
    lines = [f"Measured on: {'; '.join(machines)}", ""] if machines else []
    lines += [
        "| model | backend | precision | device | params MiB (paper) | encoder ms | decoder ms 1 box | "
        "10 pts | 16 boxes | e2e ms (p90) | FPS (paper) | peak MiB |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        paper = paper_row(r.backbone, r.variant)
        if r.error:
            lines.append(f"| {r.model} | {r.backend} | {r.precision} | - | {_f(r.params_mib)} ({paper.params_mib}) | "
                         f"not run: {r.error} | | | | | | |")
            continue
        lines.append(
            f"| {r.model} | {r.backend} | {r.precision} | {r.device} | {_f(r.params_mib)} ({paper.params_mib}) | "
            f"{_f(r.encoder_ms)} | {_f(r.decoder_ms)} | {_f(r.decoder_10pt_ms)} | {_f(r.decoder_16box_ms)} | "
            f"{_f(r.e2e_ms)} ({_f(r.e2e_p90_ms)}) | {_f(r.fps, 2)} ({paper.fps}) | {_f(r.peak_mem_mib, 0)} |"
        )
    notes = [f"- {r.model} {r.backend}/{r.precision}: {note}" for r in rows for note in r.notes]
    if notes:
        lines += ["", *notes]
    cost = hq_cost(rows)
    if cost:
        lines += ["", "Cost of HQ (end-to-end latency HQ / SAM; the paper's is its FPS ratio SAM / HQ):", "",
                  "| backbone | backend | precision | ours | paper |", "|---|---|---|---:|---:|"]
        for backbone, backend, precision, ours, paper in cost:
            lines.append(f"| {backbone} | {backend} | {precision} | {100 * (ours - 1):+.1f}% | {100 * (paper - 1):+.1f}% |")
    speedups = precision_speedups(rows)
    if speedups:
        rounds = max(r.rounds for r in rows)
        named = len({r.folder for r, _, _ in speedups}) > 1  # several folders of one model: say which
        lines += ["", f"Speed vs fp32 in this run ({rounds} interleaved round(s), median):", "",
                  "| model | backend | precision | encoder | end to end |", "|---|---|---|---:|---:|"]
        for r, encoder, e2e in speedups:
            model = f"{r.model} ({r.folder})" if named else r.model
            lines.append(f"| {model} | {r.backend} | {r.precision} | {encoder:.2f}x | {e2e:.2f}x |")
    scaled = [r for r in rows if r.scaling]
    if scaled:
        lines += ["", "Scaling (decoder ms by prompts per call; encoder images/s by batch):", ""]
        for r in scaled:
            dec = ", ".join(f"{k}: {v:.1f}" for k, v in r.scaling.get("decoder_ms_by_prompts", {}).items())
            enc = ", ".join(f"{k}: {v:.2f}" for k, v in r.scaling.get("encoder_images_per_s_by_batch", {}).items())
            skipped = r.scaling.get("skipped_batches", {})
            note = (f" (batches {', '.join(skipped)} not run: the engine's profile takes at most "
                    f"{int(next(iter(skipped.values())))})" if skipped else "")
            lines.append(f"- {r.model} {r.backend}/{r.precision}: decoder {{{dec}}}; encoder {{{enc}}}{note}")
    return "\n".join(lines)


def write_json(rows: list[BenchRow], path: str | Path) -> None:
    from ..atomic import atomic_write

    text = json.dumps(rows_to_dicts(rows), indent=2, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_markdown(rows: list[BenchRow], path: str | Path) -> None:
    from ..atomic import atomic_write

    text = markdown(rows) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def plot(rows: list[BenchRow], path: str | Path) -> None:
    """Latency breakdown per row (encoder, decoder, pre/post) and, if measured, decoder scaling."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib") from None
    from ..atomic import atomic_write

    ok = [r for r in rows if not r.error]
    scaled = [r for r in ok if r.scaling]
    fig, axes = plt.subplots(1, 2 if scaled else 1, figsize=(12 if scaled else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    labels = [f"{r.model}\n{r.backend}/{r.precision}" for r in ok]
    enc = [r.encoder_ms for r in ok]
    dec = [r.decoder_ms for r in ok]
    rest = [max(0.0, r.e2e_ms - r.encoder_ms - r.decoder_ms) for r in ok]
    ax.bar(labels, enc, label="encoder")
    ax.bar(labels, dec, bottom=enc, label="decoder (1 box)")
    ax.bar(labels, rest, bottom=[a + b for a, b in zip(enc, dec)], label="pre/post-processing")
    ax.set_ylabel("ms (median)")
    ax.set_title("End-to-end latency, one image and one box")
    ax.legend()
    ax.tick_params(axis="x", labelsize=7)
    if scaled:
        ax2 = axes[0][1]
        for r in scaled:
            data = r.scaling["decoder_ms_by_prompts"]
            ax2.plot([int(k) for k in data], list(data.values()), marker="o", label=f"{r.model} {r.backend}")
        ax2.set_xscale("log", base=2)
        ax2.set_xlabel("prompts per decoder call")
        ax2.set_ylabel("decoder ms")
        ax2.set_title("Decoder scaling")
        ax2.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
