"""fanout.py's outputs: the figures with their ratios, the Markdown tables, the plot, the files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadgen import Load

SERVERS = ("bare", "serve", "confide")
LABELS = {"bare": "bare hub", "serve": "Serve hub", "confide": "Confide"}
RATIOS = (("confide/bare", "confide", "bare"), ("confide/serve", "confide", "serve"),
          ("serve/bare", "serve", "bare"))

Row = tuple[str, Callable[[Any], Any]]


def figures(loads: tuple[Load, ...], idle: int, saturated: Load) -> list[Row]:
    """Table rows: a label, and how to read the figure from one server's result."""
    rows: list[Row] = [
        ("idle: memory per connection (KiB)",
         lambda r: _kib(r["idle"]["bytes_per_connection"])),
        (f"idle: connect/s ({idle} connections)", lambda r: r["idle"]["connect_per_s"]),
    ]
    for load in loads:
        n = load.name
        rows += [
            (f"{n}: delivered ratio", _of(n, "delivered_ratio")),
            (f"{n}: deliveries/s (offered {load.offered:,.0f})", _of(n, "deliveries_per_s")),
            (f"{n}: latency p50 (ms)", _of(n, "latency_p50_ms")),
            (f"{n}: latency p99 (ms)", _of(n, "latency_p99_ms")),
            (f"{n}: latency p999 (ms)", _of(n, "latency_p999_ms")),
            (f"{n}: connect/s ({load.sessions * load.members} connections)",
             _of(n, "connect_per_s")),
        ]
    if saturated in loads:
        rows.append(("connect/s right after the saturated load",
                     lambda r: r["connect_after_saturated"]["connect_per_s"]))
    return rows


def _of(load: str, key: str) -> Callable[[Any], Any]:
    return lambda r: r["loads"][load][key]


def _kib(value: float | None) -> float | None:
    return None if value is None else value / 1024


def _ratio(a: Any, b: Any) -> float | None:
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def _fmt(value: Any, ratio: bool = False) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    if ratio:
        return f"{value:.2f}"
    return f"{value:#.3g}" if abs(value) < 100 else f"{value:,.0f}"


def _get(get: Callable[[Any], Any], result: Any) -> Any:
    try:
        return get(result)
    except (KeyError, TypeError):
        return None


def tabulate(results: dict[str, Any], rows: list[Row]) -> tuple[list[dict[str, Any]], str]:
    """The figures with their ratios, and the Markdown table."""
    out, lines = [], [
        "| figure | bare hub | Serve hub | Confide | Confide/bare | Confide/Serve hub "
        "| Serve hub/bare |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, get in rows:
        values = {name: _get(get, results.get(name)) for name in SERVERS}
        row = {"figure": label, **values}
        row |= {key: _ratio(values[a], values[b]) for key, a, b in RATIOS}
        out.append(row)
        cells = [_fmt(values[n]) for n in SERVERS] + [_fmt(row[k], True) for k, *_ in RATIOS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return out, "\n".join(lines)


def generator_table(results: dict[str, Any], loads: tuple[Load, ...]) -> str:
    """Per load and server: the generator's CPU and send lag, the server tree's CPU."""
    lines = ["| load | server | generator CPU % | send lag p99 (ms) | server CPU (cores) "
             "| other processes (cores) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for load in loads:
        for name in SERVERS:
            r = results.get(name, {}).get("loads", {}).get(load.name)
            if r:
                lines.append(f"| {load.name} | {LABELS[name]} | "
                             f"{_fmt(r['generator_cpu_percent'])} | "
                             f"{_fmt(r['send_lag_p99_ms'])} | {_fmt(r['server_cpu_cores'])} | "
                             f"{_fmt(r.get('other_cpu_cores'))} |")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """p50 and p99 latency against offered deliveries/s, one colour per server, log y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, name in enumerate(SERVERS):
        loads = sorted(results.get(name, {}).get("loads", {}).values(),
                       key=lambda r: r["offered_deliveries_per_s"])
        xs = [r["offered_deliveries_per_s"] for r in loads]
        for key, style in (("latency_p50_ms", "-o"), ("latency_p99_ms", "--s")):
            points = [(x, r[key]) for x, r in zip(xs, loads, strict=True) if r[key] is not None]
            if points:
                ax.plot(*zip(*points, strict=True), style, color=f"C{i}",
                        label=f"{LABELS[name]} {key.split('_')[1]}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered deliveries/s")
    ax.set_ylabel("send → receive latency (ms)")
    ax.set_title(f"Chat fan-out on {os.cpu_count()} cores (load generator on the same cores)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(out_dir: Path, summary: dict[str, Any], loads: tuple[Load, ...], idle: int,
          saturated: Load) -> str:
    """Writes fanout.json, fanout.md and fanout.png; returns the Markdown."""
    results = summary["servers"]
    rows, table = tabulate(results, figures(loads, idle, saturated))
    summary["table"] = rows
    p = summary["params"]
    header = (f"Chat fan-out, {summary['mode']} mode, {summary['date']}, "
              f"{summary['cores']} cores (load generator on the same cores); "
              f"{p['duration_s']:g} s measured per load after {p['warmup_s']:g} s warm-up, "
              f"then up to {p['drain_s']:g} s of drain; loads are sessions x members x "
              "messages/s per member; latency is send → receipt over every delivery.")
    markdown = (f"{header}\n\n{table}\n\nCPU over each measured window (generator: 100% = "
                "one core). A generator near 100% or a large send lag caps the figures; "
                "other processes using CPU make them unreliable:\n\n"
                f"{generator_table(results, loads)}\n")
    for name, r in results.items():
        if "error" in r:
            markdown += f"\n{LABELS[name]} failed: {r['error']}\n"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "fanout.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "fanout.md").write_text(markdown)
    plot(results, out_dir / "fanout.png")
    return markdown
