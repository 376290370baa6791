"""Benchmark rows as a markdown table (with the paper's numbers), JSON, and a PNG plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .. import tables
from ..errors import UsageError
from ..tables import Block, Table
from .rows import BenchRow, rows_to_dicts
from .paper import paper_row


def _f(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def hq_cost(rows: list[BenchRow]) -> list[tuple[str, str, str, float, float]]:
    """(backbone, backend, precision, our HQ/SAM e2e latency ratio, the paper's FPS ratio SAM/HQ)."""
    out = []
    by_key = {(r.target.backbone, r.target.variant, r.target.backend, r.target.precision, "official" in r.model): r
              for r in rows if not r.error}
    for (backbone, variant, backend, precision, official), hq in by_key.items():
        sam = by_key.get((backbone, "sam", backend, precision, official))
        if variant != "hq" or sam is None:
            continue
        paper = paper_row(backbone, "sam").fps / paper_row(backbone, "hq").fps
        name = backend + (" (official)" if official else "")
        out.append((backbone, name, precision, hq.timings.e2e_ms / sam.timings.e2e_ms, paper))
    return out


def precision_speedups(rows: list[BenchRow]) -> list[tuple[BenchRow, float, float]]:
    """(row, encoder speed-up, end-to-end speed-up) of each fp16 / int8 row over the fp32 row of the same
    model, backend and folder, both measured in this run."""
    fp32 = {(r.model, r.target.backend, r.target.folder): r for r in rows
            if r.target.precision == "fp32" and not r.error}
    out = []
    for r in rows:
        base = fp32.get((r.model, r.target.backend, r.target.folder))
        if r.target.precision != "fp32" and not r.error and base is not None:
            out.append((r, base.timings.encoder_ms / r.timings.encoder_ms, base.timings.e2e_ms / r.timings.e2e_ms))
    return out


def _row_cells(r: BenchRow) -> list[str]:
    t, ms = r.target, r.timings
    paper = paper_row(t.backbone, t.variant)
    params = f"{_f(r.sizes.params_mib)} ({paper.params_mib})"
    if r.error:
        return [r.model, t.backend, t.precision, "-", params, f"not run: {r.error}", "", "", "", "", "", ""]
    return [r.model, t.backend, t.precision, r.machine.device, params, _f(ms.encoder_ms), _f(ms.decoder_ms),
            _f(ms.decoder_10pt_ms), _f(ms.decoder_16box_ms), f"{_f(ms.e2e_ms)} ({_f(ms.e2e_p90_ms)})",
            f"{_f(ms.fps, 2)} ({paper.fps})", _f(r.memory.peak_mib, 0)]


def _scaling_lines(rows: list[BenchRow]) -> list[str]:
    lines = []
    for r in rows:
        if r.scaling is None:
            continue
        dec = ", ".join(f"{k}: {v:.1f}" for k, v in r.scaling.decoder_ms_by_prompts.items())
        enc = ", ".join(f"{k}: {v:.2f}" for k, v in r.scaling.encoder_images_per_s_by_batch.items())
        skipped = r.scaling.skipped_batches
        note = (f" (batches {', '.join(skipped)} not run: the engine's profile takes at most "
                f"{int(next(iter(skipped.values())))})" if skipped else "")
        lines.append(f"- {r.model} {r.target.backend}/{r.target.precision}: decoder {{{dec}}}; encoder {{{enc}}}{note}")
    return lines


def blocks(rows: list[BenchRow]) -> list[Block]:
    """The report: the rows next to the paper's Table 10, notes, the cost of HQ per backbone, precision
    speed-ups from this run, scaling."""
    machines = sorted({r.machine.summary for r in rows if r.machine.summary})
    out: list[Block] = [f"Measured on: {'; '.join(machines)}"] if machines else []
    out.append(Table(["model", "backend", "precision", "device", "params MiB (paper)", "encoder ms", "decoder ms 1 box",
                      "10 pts", "16 boxes", "e2e ms (p90)", "FPS (paper)", "peak MiB"],
                     [_row_cells(r) for r in rows], numeric=frozenset(range(4, 12))))
    notes = [f"- {r.model} {r.target.backend}/{r.target.precision}: {note}" for r in rows for note in r.notes]
    if notes:
        out.append("\n".join(notes))
    cost = hq_cost(rows)
    if cost:
        out.append(Table(["backbone", "backend", "precision", "ours", "paper"],
                         [[b, be, p, f"{100 * (o - 1):+.1f}%", f"{100 * (pp - 1):+.1f}%"] for b, be, p, o, pp in cost],
                         title="Cost of HQ (end-to-end latency HQ / SAM; the paper's is its FPS ratio SAM / HQ):",
                         numeric=frozenset({3, 4})))
    speedups = precision_speedups(rows)
    if speedups:
        rounds = max(r.rounds for r in rows)
        named = len({r.target.folder for r, _, _ in speedups}) > 1  # several folders of one model: say which
        out.append(Table(["model", "backend", "precision", "encoder", "end to end"],
                         [[f"{r.model} ({r.target.folder})" if named else r.model, r.target.backend,
                           r.target.precision, f"{enc:.2f}x", f"{e2e:.2f}x"] for r, enc, e2e in speedups],
                         title=f"Speed vs fp32 in this run ({rounds} interleaved round(s), median):",
                         numeric=frozenset({3, 4})))
    scaling = _scaling_lines(rows)
    if scaling:
        out.append("Scaling (decoder ms by prompts per call; encoder images/s by batch):\n\n" + "\n".join(scaling))
    return out


def markdown(rows: list[BenchRow]) -> str:
    """The report as markdown (``--markdown``, and what the terminal shows as tables)."""
    return tables.markdown(blocks(rows))


def write_json(rows: list[BenchRow], path: str | Path) -> None:
    from ..atomic import atomic_write

    text = json.dumps(rows_to_dicts(rows), indent=2, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_markdown(rows: list[BenchRow], path: str | Path) -> None:
    from ..atomic import atomic_write

    text = markdown(rows) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def plot_title(rows: list[BenchRow]) -> str:
    """What the figure measured: the machine(s) and the precision(s) of its rows."""
    machines = sorted({r.machine.summary for r in rows if r.machine.summary}) or ["unknown machine"]
    precisions = "/".join(sorted({r.target.precision for r in rows}))
    return f"End-to-end latency, one image and one box ({precisions}) on {'; '.join(machines)}"


def _label_bars(ax, bars, values: list[float]) -> None:
    """The value (ms) on each bar."""
    for bar, value in zip(bars, values):
        if value > 0:
            ax.annotate(f"{value:.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_y() + bar.get_height() / 2),
                        ha="center", va="center", fontsize=7, color="white")


def _latency_axes(ax, ok: list[BenchRow], title: str) -> None:
    """Stacked bars per row: encoder, decoder (1 box), the rest of end to end; the total and FPS above."""
    labels = [f"{r.model}\n{r.target.backend}/{r.target.precision}" for r in ok]
    enc = [r.timings.encoder_ms for r in ok]
    dec = [r.timings.decoder_ms for r in ok]
    rest = [max(0.0, r.timings.e2e_ms - r.timings.encoder_ms - r.timings.decoder_ms) for r in ok]
    _label_bars(ax, ax.bar(labels, enc, label="encoder"), enc)
    _label_bars(ax, ax.bar(labels, dec, bottom=enc, label="decoder (1 box)"), dec)
    _label_bars(ax, ax.bar(labels, rest, bottom=[a + b for a, b in zip(enc, dec)], label="pre/post-processing"), rest)
    for i, r in enumerate(ok):
        ax.annotate(f"{r.timings.e2e_ms:.0f} ms, {r.timings.fps:.2f} FPS", (i, r.timings.e2e_ms), ha="center",
                    va="bottom", fontsize=7)
    ax.set_ylabel("ms (median)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    ax.tick_params(axis="x", labelsize=7)


def _scaling_axes(ax, scaled: list[BenchRow]) -> None:
    """Decoder ms by prompts per call, a line per row, each point labelled."""
    for r in scaled:
        data = r.scaling.decoder_ms_by_prompts  # type: ignore[union-attr]
        ax.plot([int(k) for k in data], list(data.values()), marker="o",
                label=f"{r.model} {r.target.backend}/{r.target.precision}")
        for k, v in data.items():
            ax.annotate(f"{v:.0f}", (int(k), v), textcoords="offset points", xytext=(0, 4), fontsize=7, ha="center")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("prompts per decoder call")
    ax.set_ylabel("decoder ms")
    ax.set_title("Decoder scaling", fontsize=8)
    ax.legend(fontsize=7)


def plot(rows: list[BenchRow], path: str | Path) -> None:
    """Latency breakdown per row (encoder, decoder, pre/post, each bar labelled in ms, the total above it) and,
    if measured, decoder scaling; the machine and the precisions in the title."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib") from None
    from ..atomic import atomic_write

    ok = [r for r in rows if not r.error]
    scaled = [r for r in ok if r.scaling is not None]
    fig, axes = plt.subplots(1, 2 if scaled else 1, figsize=(13 if scaled else 8, 5), squeeze=False)
    _latency_axes(axes[0][0], ok, plot_title(ok or rows))
    if scaled:
        _scaling_axes(axes[0][1], scaled)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
