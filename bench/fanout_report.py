"""bench/fanout.py's results, judged and shown: issue 2's targets, a Markdown summary, charts.

Everything here reads the results as ``fanout.py --json`` writes them (a plain
dict), so the docs' section and charts can be drawn again from the committed
``docs/img/fanout.json`` and compared (tests/test_docs.py).

Issue 2's targets, legalstream against the bare Starlette endpoint measured in
the same run, read with the lean client when it ran (it keeps up with every
server, so the figures are the servers'; docs/benchmarks.md):

* throughput at least 0.8x;
* p99 latency at most 1.5x, at saturation and at half load;
* RSS per idle connection at most 1.3x.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from charts import Bar, Ladder, percentile_ladders, ratio_bars

#: The files ``fanout.py --docs`` writes, relative to docs/.
JSON_FILE = "img/fanout.json"
THROUGHPUT_SVG = "img/fanout-throughput.svg"
LATENCY_SVG = "img/fanout-latency.svg"
#: The docs/benchmarks.md section it writes (legalstream.docfigures).
SECTION = "fanout"


@dataclass(frozen=True)
class Verdict:
    target: str
    limit: float
    at_most: bool  # True: the ratio must not exceed the limit
    ratios: dict[str, float]  # where measured (a load, or a connection count) -> ratio

    @property
    def met(self) -> bool:
        return all(
            (r <= self.limit) if self.at_most else (r >= self.limit) for r in self.ratios.values()
        )

    def line(self) -> str:
        where = ", ".join(f"{r:.2f}x at {k}" for k, r in self.ratios.items())
        return f"{self.target:<36} {'met' if self.met else 'NOT met':<8} {where}"


def load_label(key: str) -> str:
    """``1000x50`` -> ``1,000 x 50`` (clients x events per run)."""
    clients, events = key.split("x")
    return f"{int(clients):,} x {int(events):,}"


def judged(results: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The client the targets are read with, the baseline's and legalstream's results."""
    client = "lean" if "lean" in results["clients"] else results["clients"][0]
    servers = results["servers"]
    base = servers[0]
    ours = next(s for s in servers if s["kind"] == "legalstream" and s["bus"] == "memory")
    return client, base, ours


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    client, _base, ours = judged(results)
    loads = results["loads"]
    out = []
    sat = ours["saturation"].get(client, {})
    half = ours["half_load"].get(client, {})
    out.append(
        Verdict(
            "throughput >= 0.8x",
            0.8,
            False,
            {load_label(k): sat[k]["x_base"] for k in loads if k in sat},
        )
    )
    out.append(
        Verdict(
            "p99 <= 1.5x at saturation",
            1.5,
            True,
            {load_label(k): sat[k]["p99_x_base"] for k in loads if k in sat},
        )
    )
    if half:
        out.append(
            Verdict(
                "p99 <= 1.5x at half load",
                1.5,
                True,
                {load_label(k): half[k]["p99_x_base"] for k in loads if k in half},
            )
        )
    if ours.get("rss_x_base"):
        out.append(
            Verdict(
                "RSS per idle connection <= 1.3x",
                1.3,
                True,
                {f"{int(n):,} connections": r for n, r in ours["rss_x_base"].items()},
            )
        )
    return out


def verdict_header(results: dict[str, Any]) -> str:
    client, base, ours = judged(results)
    return (
        f"issue 2's targets ({_short(ours)} x {_short(base)}, {client} client, "
        f"{results['repeat']} round(s))"
    )


def markdown(results: dict[str, Any]) -> str:
    """The docs section: verdicts, the charts, the figures behind them."""
    client, base, _ours = judged(results)
    lines = [
        f"Command: `{results['command']}` ({results['date']}, {results['cpus']} CPUs, "
        f"{results['repeat']} round(s); raw results: [{JSON_FILE}]({JSON_FILE})). "
        f"A figure is the median of the rounds; a ratio ('x base') the median of the "
        f"rounds' own ratios against the bare endpoint, {base['name']}, each round "
        f"measuring every server in turn. The targets are read with the {client} client.",
        "",
        "| target (issue 2) | verdict | ratio |",
        "|---|---|---|",
    ]
    for v in verdicts(results):
        where = ", ".join(f"{r:.2f}x at {k}" for k, r in v.ratios.items())
        lines.append(f"| {v.target} | {'met' if v.met else '**not met**'} | {where} |")
    lines += [
        "",
        f"![throughput against bare Starlette]({THROUGHPUT_SVG})",
        "",
        f"![latency percentiles]({LATENCY_SVG})",
        "",
        "| server | client | load | events/s | x base | p50 ms | p99 ms | p99 x base |"
        " half load p99 ms | x base |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["servers"]:
        for c in results["clients"]:
            for k in results["loads"]:
                sat = s["saturation"].get(c, {}).get(k)
                if sat is None:
                    continue
                half = s["half_load"].get(c, {}).get(k)
                lines.append(
                    f"| {_short(s)} | {c} | {load_label(k)} | {sat['events_per_s']:,.0f} |"
                    f" {sat['x_base']:.2f} | {sat['p50_ms']:.2f} | {sat['p99_ms']:.2f} |"
                    f" {sat['p99_x_base']:.2f} |"
                    + (f" {half['p99_ms']:.2f} | {half['p99_x_base']:.2f} |" if half else " | |")
                )
    rss = [
        f"{_short(s)}: " + ", ".join(f"{v:.1f} KiB at {int(n):,}" for n, v in s["rss_kib"].items())
        for s in results["servers"]
        if s.get("rss_kib")
    ]
    if rss:
        lines += ["", "RSS per idle connection: " + "; ".join(rss) + "."]
    resume = [
        f"{s['bus']} bus {s['resume_1000_ms']:.1f} ms"
        for s in results["servers"]
        if s.get("resume_1000_ms") is not None
    ]
    if resume:
        lines += [
            "",
            "Resume (replay of 1,000 events to a new connection): " + ", ".join(resume) + ".",
        ]
    return "\n".join(lines)


def throughput_chart(results: dict[str, Any]) -> str:
    bars = []
    for c in results["clients"]:
        for k in results["loads"]:
            group = f"{c} client, {load_label(k)}"
            for s in results["servers"][1:]:
                sat = s["saturation"].get(c, {}).get(k)
                if sat is not None:
                    bars.append(Bar(group, _short(s), sat["x_base"]))
    return ratio_bars(
        bars,
        title="events/s at saturation, x bare Starlette (same run)",
        target=0.8,
        target_label="target 0.8x",
    )


def latency_chart(results: dict[str, Any]) -> str:
    client, base, _ours = judged(results)
    ladders = []
    for mode, name in (("saturation", "saturation"), ("half_load", "half load")):
        for k in results["loads"]:
            base_row = base[mode].get(client, {}).get(k)
            if base_row is None:
                continue
            panel = f"{name}, {load_label(k)}"
            for s in results["servers"]:
                row = s[mode].get(client, {}).get(k)
                if row is None:
                    continue
                ladders.append(
                    Ladder(
                        panel,
                        _short(s),
                        row["p50_ms"],
                        row["p90_ms"],
                        row["p99_ms"],
                        row["p999_ms"],
                        1.5 * base_row["p99_ms"],
                    )
                )
    return percentile_ladders(
        ladders, title=f"latency, publish to receive (ms, log scale), {client} client"
    )


def _short(server: dict[str, Any]) -> str:
    name = server["kind"]
    if server["kind"] == "legalstream" and (server["bus"] != "memory" or server["workers"] > 1):
        name += f" ({server['bus']}, {server['workers']} workers)"
    elif server["ws_impl"] not in ("websockets-sansio", "-"):
        name += f" ({server['ws_impl']})"
    return name
