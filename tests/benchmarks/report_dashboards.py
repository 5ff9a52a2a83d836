"""The "dashboards" section of docs/benchmarks.md, from bench_dashboards.py's record: its
targets (fixed before measuring), notes, tables and prose. Nothing here measures: the same
functions render a fresh record and one read back from docs/benchmarks.json."""

from __future__ import annotations

import report
from measure import MIB, NEIGHBOURHOODS, stats

# Targets, fixed before measuring.
TTI_PREHEATED_MEDIAN_S = 1.0
TTI_COLD_MEDIAN_S = 2.5
LATENCY_MEDIAN_MS = 100.0
LATENCY_P95_MS = 250.0
KERNEL_RSS_MAX_MIB = 200.0
# What the server spends per new price-page viewer (process accounting, not the browser's).
SERVER_CPU_PER_VIEWER_S = 0.5
SERVER_RSS_PER_KERNEL_MB = 130.0  # MB = 10^6 bytes
CROWD_PAGE_READY_P95_S = 15.0  # the largest crowd, arriving over --arrive-within seconds
MB = 10**6
SETTINGS = {
    "tti_median_s": {"preheated_fresh": TTI_PREHEATED_MEDIAN_S, "cold_fresh": TTI_COLD_MEDIAN_S}
}


VARIANTS = {
    "preheated_fresh": "preheated, fresh cache",
    "preheated_warm": "preheated, warm cache (repeat visit)",
    "cold_fresh": "cold (no pool), fresh cache",
}
TIMELINE = {
    "response_start": "first byte of the page",
    "response_end": "page HTML complete",
    "dom_content_loaded": "DOMContentLoaded",
    "assets_loaded": "scripts and styles loaded",
    "ws_created": "kernel websocket created",
    "ws_open": "kernel websocket open",
    "ws_first_message": "first kernel message",
    "ws_widget_state": "widget state received (first message > 100 kB)",
    "widget": "first widget rendered",
    "loading_gone": "loading screen removed",
    "price": "price shown",
    "tti": "interactive (price, form, no loading screen)",
    "leaflet": "map shown",
    "bqplot": "chart shown",
}
LATENCY_GROUPS = {
    "after_load": "right after a preheated load (pool refilling)",
    "during_refill": "… of which overlapped the replacement kernel's start-up",
    "idle": "preheated page, server quiet",
    "cold_page": "right after a cold load (context)",
}


# --- targets and notes --------------------------------------------------------------------


def target_row(figure: str, median: str, p95: str, target: str, passed: bool | None) -> dict:
    return {"figure": figure, "median": median, "p95": p95, "target": target, "pass": passed}


def tti_targets(out: dict) -> list[dict]:
    rows = []
    limits = out["target_settings"]["tti_median_s"]
    for name, limit in [
        ("preheated_fresh", limits["preheated_fresh"]),
        ("cold_fresh", limits["cold_fresh"]),
        ("preheated_warm", None),
    ]:
        s = out["tti_ms"][name]
        met = s["n"] > 0 and s["missing"] == 0 and s["median"] <= (limit or 0) * 1000
        passed = None if limit is None else met
        target = "—" if limit is None else f"median ≤ {limit:g} s"
        rows.append(
            target_row(
                f"TTI, {VARIANTS[name]}",
                report.s_from_ms(s.get("median")),
                report.s_from_ms(s.get("p95")),
                target,
                passed,
            )
        )
    return rows


def latency_targets(out: dict) -> list[dict]:
    rows = []
    for name, label in LATENCY_GROUPS.items():
        s = out["latency_ms"][name]
        judged = name != "cold_page"
        passed = (
            s["n"] > 0
            and s["missing"] == 0
            and s["median"] <= LATENCY_MEDIAN_MS
            and s["p95"] <= LATENCY_P95_MS
        )
        target = f"median ≤ {LATENCY_MEDIAN_MS:g} ms, p95 ≤ {LATENCY_P95_MS:g} ms"
        rows.append(
            target_row(
                f"change → new price, {label} (n={s['n']})",
                report.ms(s.get("median")),
                report.ms(s.get("p95")),
                target if judged else "—",
                passed if judged else None,
            )
        )
    return rows


def memory_targets(out: dict) -> list[dict]:
    rows = []
    for page, states in out["memory"].items():
        for state, m in states.items():
            rows.append(
                target_row(
                    f"{page} kernel RSS {state.replace('_', ' ')} (USS {m['uss']:.0f}, PSS "
                    f"{m['pss']:.0f} MiB)",
                    f"{m['rss']:.0f} MiB",
                    "—",
                    f"≤ {KERNEL_RSS_MAX_MIB:g} MiB",
                    m["rss"] <= KERNEL_RSS_MAX_MIB,
                )
            )
    return rows


def viewer_targets(out: dict) -> list[dict]:
    pool = out["conditions"]["pool_total"]
    rows = []
    for n, s in out["viewers"].items():
        tti = s["tti_ms"]
        rows.append(
            target_row(
                f"{n} viewers: own price correct (TTI median/p95)",
                f"{s['ok']}/{s['viewers']} ({report.s_from_ms(tti.get('median'))})",
                report.s_from_ms(tti.get("p95")),
                "all",
                s["ok"] == s["viewers"],
            )
        )
        back = s["after_leaving"]
        still = by_arrival(back["leaked_by_arrival"], int(n))
        left = f"{n} viewers left (before-unload): kernels after {back['seconds']:.0f} s "
        rows.append(kernels_left(f"{left}(still running: {still})", back, pool))
    if "vanish" in out:
        v = out["vanish"]["after_vanishing"]
        gone = f"{out['vanish']['viewers']} viewers vanished: kernels after {v['seconds']:.0f} s"
        rows.append(kernels_left(f"{gone} (culled)", v, pool))
    return rows


def kernels_left(figure: str, after: dict, pool: int) -> dict:
    """The target row of the kernels still running after viewers went: the pool's alone."""
    none_leaked = after["leaked"] == 0
    return target_row(figure, str(after["kernels"]), "—", f"= pool size {pool}", none_leaked)


def by_arrival(left: dict[str, int], n: int) -> str:
    """Kernels left by arrival, e.g. "direct link 3/3, via landing page 0/2" (every odd
    viewer came through the landing page)."""
    landing = n // 2
    return (
        f"direct link {left['direct link']}/{n - landing}, "
        f"via landing page {left['via landing page']}/{landing}"
    )


def server_targets(out: dict) -> list[dict]:
    """Item 7: the server's CPU and memory per new viewer, and the largest crowd's
    page-ready time (the page's HTML complete: the server's part of a load)."""
    rows = []
    per_load = out.get("server_cpu_per_load_s", {}).get("with_refill", {})
    if per_load.get("n"):
        rows.append(
            target_row(
                "server CPU per new viewer, one at a time (load + 6 changes + pool refill)",
                f"{per_load['median']:.2f} CPU-s",
                f"{per_load['p95']:.2f} CPU-s",
                f"median ≤ {SERVER_CPU_PER_VIEWER_S} CPU-s",
                per_load["median"] <= SERVER_CPU_PER_VIEWER_S,
            )
        )
    if not out["viewers"]:
        return rows
    n, s = max(out["viewers"].items(), key=lambda item: int(item[0]))
    a, m, ready = s["memory"]["accounting"], s["memory"], s["page_ready_ms"]
    rows.append(
        target_row(
            f"{n} viewers: server CPU per viewer (Voilà {a['voila_s']:.1f} + kernels "
            f"{a['kernels_s']:.1f} CPU-s in all)",
            f"{a['per_viewer_s']:.2f} CPU-s",
            "—",
            f"≤ {SERVER_CPU_PER_VIEWER_S} CPU-s",
            a["per_viewer_s"] <= SERVER_CPU_PER_VIEWER_S,
        )
    )
    rss = m["kernel_rss"]
    if rss.get("n"):
        rows.append(
            target_row(
                f"{n} viewers: RSS per kernel (PSS {m['kernel_pss']['median'] * MIB / MB:.0f} MB)",
                f"{rss['median'] * MIB / MB:.0f} MB",
                f"{rss['p95'] * MIB / MB:.0f} MB",
                f"≤ {SERVER_RSS_PER_KERNEL_MB:.0f} MB",
                rss["p95"] * MIB / MB <= SERVER_RSS_PER_KERNEL_MB,
            )
        )
    if ready.get("n"):
        rows.append(
            target_row(
                f"{n} viewers arriving within {out['conditions'].get('arrive_within_s', 0):.0f} s: "
                "server page-ready (HTML complete)",
                report.s_from_ms(ready["median"]),
                report.s_from_ms(ready["p95"]),
                f"p95 ≤ {CROWD_PAGE_READY_P95_S:.0f} s",
                ready["p95"] / 1000 <= CROWD_PAGE_READY_P95_S and s["ok"] == s["viewers"],
            )
        )
    return rows


def targets(out: dict) -> list[dict]:
    return (
        tti_targets(out)
        + latency_targets(out)
        + memory_targets(out)
        + viewer_targets(out)
        + server_targets(out)
    )


def steps(line: dict[str, float]) -> list[tuple[float, str, str]]:
    """(ms, from, to) between consecutive marks up to TTI, largest first."""
    tti = line["tti"]
    found, previous, label = [], 0.0, "navigation start"
    for t, key in sorted((t, key) for key, t in line.items() if t <= tti):
        found.append((t - previous, label, TIMELINE[key]))
        previous, label = t, TIMELINE[key]
    return sorted(found, reverse=True)


def where_time_goes(out: dict) -> list[str]:
    """The fresh-cache loads' biggest steps, slowest against its target first, in words."""
    limits = out["target_settings"]["tti_median_s"]  # the targets when it was measured
    ratio = {n: out["tti_ms"][n].get("median", 0) / (1000 * limit) for n, limit in limits.items()}
    said = []
    for name in sorted(ratio, key=ratio.get, reverse=True):
        line = out["timeline_ms"][name]
        if "tti" not in line:
            continue
        biggest = ", ".join(
            f"{a} → {b} {d:.0f} ms ({d / line['tti']:.0%})" for d, a, b in steps(line)[:3]
        )
        said.append(
            f"- {VARIANTS[name].capitalize()}: median TTI {line['tti']:.0f} ms "
            f"({ratio[name]:.0%} of its target). Largest steps: {biggest}."
        )
    assets = {
        n: stats([m["navigation"].get("asset_bytes") for m in out["loads"][n]])
        for n in ("preheated_fresh", "preheated_warm")
    }
    if assets["preheated_fresh"].get("median") is not None:
        fresh, warm = (assets[n].get("median", 0) / MIB for n in assets)
        tti = out["tti_ms"]["preheated_warm"].get("median", 0)
        said.append(
            f"- Scripts and styles over the network per load: {fresh:.1f} MiB with an "
            f"empty cache, {warm:.1f} MiB on a repeat visit (median TTI {tti:.0f} ms)."
        )
    return said


def notes(out: dict) -> list[str]:
    said = []
    refill = out["refill_done_after_load_s"]
    after = out["latency_ms"]["during_refill"]
    if refill.get("median") is not None:
        said.append(
            f"- After a preheated load the replacement kernel was done (server quiet again) "
            f"{refill['median']:.1f} s after the load began (median); {after['n']} of "
            f"{out['latency_ms']['after_load']['n']} changes right after load overlapped it."
        )
    said += beacon_notes(out)
    said += failure_notes(out)
    if "vanish" in out:
        v, cull = out["vanish"], out["conditions"]["cull_vanish_server"]
        said.append(
            f"- Vanished viewers: {v['kernels_2s_after_vanishing']} kernels 2 s after the "
            f"{v['viewers']} tabs died (no shutdown without before-unload); "
            f"{v['after_vanishing']['kernels']} after {v['after_vanishing']['seconds']:.0f} s "
            f"(cull_idle_timeout {cull['cull_idle_timeout']} s, cull_interval "
            f"{cull['cull_interval']} s on the bench's server; voila.json has "
            f"{out['conditions']['cull_voila_json'].get('cull_idle_timeout')} s)."
        )
    return said


def failure_notes(out: dict) -> list[str]:
    said = []
    crowds = {f"{n} viewers": s for n, s in out["viewers"].items()}
    if "vanish" in out:
        crowds[f"{out['vanish']['viewers']} vanishing viewers"] = out["vanish"]
    for label, s in crowds.items():
        if s["ok"] < s["viewers"]:
            said.append(
                f"- {label}: {s['viewers'] - s['ok']} without their correct price, e.g. "
                f"{(s['errors'] or ['a wrong price'])[0]}."
            )
        dropped = s["memory"].get("iopub_timeouts", 0)
        if dropped:
            said.append(
                f'- {label}: Voilà logged {dropped} "Timeout waiting for IOPub output": its '
                "executor (nbclient's `iopub_timeout`, 4 s by default) stopped waiting for a "
                "cell's output while the cores were busy starting kernels, and those pages "
                "never show the form or the price. Raising `VoilaExecutor.iopub_timeout` in "
                "voila.json (e.g. to 60) lets them finish."
            )
    return said


def beacon_notes(out: dict) -> list[str]:
    beacons = out.get("beacons", {})
    said = [
        "- Shutdown beacons of normal leaves (page closed with before-unload), by outcome in "
        "Voilà's log: " + ", ".join(f"{k} {v}" for k, v in sorted(beacons.items())) + "."
    ]
    if beacons.get("refused (403)"):
        said.append(
            "- Refused beacons: Voilà's before-unload beacon posts the value of the `_xsrf` "
            "cookie, but only the landing page sets that cookie, not a page opened directly "
            "(a shared link, a bookmark). Such a viewer's shutdown is refused (403, `_xsrf "
            "argument missing from POST`) and its kernel runs until the culler takes it "
            f"(cull_idle_timeout {out['conditions']['cull_voila_json'].get('cull_idle_timeout')}"
            " s in voila.json). Upstream: voila-dashboards/voila#1458. The bench shuts such "
            "kernels down itself after noting them, so each measurement starts from the pool."
        )
    return said


# --- markdown -----------------------------------------------------------------------------


def md_tables(out: dict) -> dict[str, str]:
    """The section's tables, by name, from the summary's records."""
    tti = [
        {
            "load": label,
            "n": out["tti_ms"][name]["n"],
            **{k: out["tti_ms"][name].get(k) for k in ("median", "p95", "min", "max")},
        }
        for name, label in VARIANTS.items()
    ]
    names, first = list(VARIANTS), out["timeline_ms"][next(iter(VARIANTS))]
    timeline = [
        {
            "mark (median ms since navigation start)": TIMELINE[key],
            **{VARIANTS[n]: out["timeline_ms"][n].get(key) for n in names},
        }
        for key in sorted(TIMELINE, key=lambda k: first.get(k, float("inf")))
        if any(key in out["timeline_ms"][n] for n in names)
    ]
    latency = [
        {
            "after the change": label,
            "n": out["latency_ms"][name]["n"],
            **{k: out["latency_ms"][name].get(k) for k in ("median", "p95", "max")},
            "no new price": out["latency_ms"][name]["missing"],
        }
        for name, label in LATENCY_GROUPS.items()
    ]
    memory = [
        {
            "page": page,
            "kernel": state.replace("_", " "),
            "RSS MiB": m["rss"],
            "USS MiB": m["uss"],
            "PSS MiB": m["pss"],
        }
        for page, states in out["memory"].items()
        for state, m in states.items()
    ]
    rounds = [(n, s, s["after_leaving"], "") for n, s in out["viewers"].items()]
    if "vanish" in out:
        v = out["vanish"]
        rounds.append((f"{v['viewers']} (vanish)", v, v["after_vanishing"], ", culled"))
    viewers = [
        {
            "N": n,
            "correct": f"{s['ok']}/{s['viewers']}",
            "TTI median": s["tti_ms"].get("median"),
            "TTI p95": s["tti_ms"].get("p95"),
            "TTI max": s["tti_ms"].get("max"),
            "kernels": s["memory"]["kernels"],
            "total RSS MiB": s["memory"]["rss"],
            "peak RSS MiB": s["memory"]["peak_rss"],
            "total PSS MiB": s["memory"]["pss"],
            "CPU s server / browser": "{server:.0f} / {browser:.0f}".format(**s["memory"]["cpu_s"]),
            "IOPub timeouts": s["memory"]["iopub_timeouts"],
            "kernels after leaving": f"{back['kernels']} after {back['seconds']:.1f} s{how}",
        }
        for n, s, back, how in rounds
    ]
    per_load = out.get("server_cpu_per_load_s", {})
    one = [
        {"what": label, "median CPU-s": per_load[key]["median"], "p95 CPU-s": per_load[key]["p95"]}
        for key, label in SERVER_CPU.items()
        if per_load.get(key, {}).get("n")
    ]
    crowds = [
        {
            "N": n,
            "server CPU-s (Voilà / kernels)": "{total_s:.1f} ({voila_s:.1f} / "
            "{kernels_s:.1f})".format(**s["memory"]["accounting"]),
            "per viewer": s["memory"]["accounting"]["per_viewer_s"],
            "new kernels": s["memory"]["accounting"]["new_kernels"],
            "kernel RSS MB median": s["memory"]["kernel_rss"].get("median", 0) * MIB / MB,
            "kernel PSS MB median": s["memory"]["kernel_pss"].get("median", 0) * MIB / MB,
            "page-ready median / p95": f"{report.s_from_ms(s['page_ready_ms'].get('median'))} / "
            f"{report.s_from_ms(s['page_ready_ms'].get('p95'))}",
        }
        for n, s in out["viewers"].items()
        if "accounting" in s["memory"]
    ]
    seconds = dict.fromkeys(
        ("median", "p95", "min", "max", "TTI median", "TTI p95", "TTI max"), report.s_from_ms
    )
    mib, cpu = ".0f", ".2f"
    return {
        "targets": report.targets_table(out["targets"]),
        "tti": report.table(tti, seconds),
        "timeline": report.table(timeline, dict.fromkeys(VARIANTS.values(), ".0f")),
        "latency": report.table(latency, dict.fromkeys(("median", "p95", "max"), report.ms)),
        "memory": report.table(memory, dict.fromkeys(("RSS MiB", "USS MiB", "PSS MiB"), mib)),
        "viewers": report.table(
            viewers,
            {**seconds, "total RSS MiB": mib, "peak RSS MiB": mib, "total PSS MiB": mib},
            align="lrrrrrrrrrrl",
        ),
        "server": report.table(one, {"median CPU-s": cpu, "p95 CPU-s": cpu}),
        "crowds": report.table(
            crowds,
            {"per viewer": cpu, "kernel RSS MB median": mib, "kernel PSS MB median": mib},
            align="lrrrrrl",
        ),
    }


SERVER_CPU = {
    "load": "one viewer: until interactive (Voilà + kernel)",
    "load_voila": "… of which the Voilà process",
    "with_refill": "one viewer: in all, with 6 changes and the pool refill",
    "refill_kernel": "… of which the replacement kernel (start, imports, notebook)",
}


def arrival(conditions: dict) -> str:
    """How a crowd arrived: spread over --arrive-within seconds, or all at once (0)."""
    spread = conditions["arrive_within_s"]
    return f"evenly over {spread:g} s" if spread else "at once"


def md_conditions(out: dict) -> list[str]:
    c = out["conditions"]
    pools = ", ".join(f"{nb} {size}" for nb, size in c["pool_sizes"].items())
    cull = c["cull_vanish_server"]
    return [
        f"- {out['browser']} headless (Debian's, via Playwright); a fresh browser context "
        'per load unless "warm cache" (one context, the priming visit dropped).',
        f"- {c['loads']} loads per variant, in turn: preheated (fresh cache), cold (fresh "
        "cache), preheated repeat visit (warm cache), from two servers running side by side "
        "(`make serve`, the cold one with `VOILA_ARGS=--preheat_kernel=False`), after one "
        "uncounted load of each; the cold server is stopped before the memory and viewer "
        "phases.",
        f"- Settle gap: {c['settle']}.",
        f"- Interactions: bursts of {c['interactions_per_burst']} changes "
        f"{c['interaction_spacing_ms']:.0f} ms apart (living area and neighbourhood, each "
        "between two values), timed in the page from the committed change to the new price "
        "text in the DOM.",
        f"- Kernel pools (voila.json): {pools}.",
        f"- Viewers: N = {', '.join(map(str, c['viewers']))} arriving {arrival(c)} in one "
        "browser (one context each), on the preheated server with voila.json's settings; "
        "viewer i sets living area 1000 + 50·i and one of "
        f"{len(NEIGHBOURHOODS)} neighbourhoods, and its price is checked against "
        "`predict_one` on the values its form shows; every other viewer arrives with the "
        "landing page's `_xsrf` cookie, the rest by a direct link. Then all leave normally "
        "(page closed with before-unload). Total memory = Voilà + make + kernels.",
        f"- Vanishing viewers ({c['vanish_viewers']}): their browser contexts are closed "
        'without before-unload, on a server started with `VOILA_ARGS="--MappingKernelManager.'
        f"cull_idle_timeout={cull['cull_idle_timeout']} --MappingKernelManager.cull_interval="
        f'{cull["cull_interval"]}"` (voila.json: cull_idle_timeout '
        f"{c['cull_voila_json'].get('cull_idle_timeout')}, cull_interval "
        f"{c['cull_voila_json'].get('cull_interval')}, cull_connected "
        f"{str(c['cull_voila_json'].get('cull_connected')).lower()}), after the price is "
        "shown; kernels are counted until back at the pool size. A round of its own: with so "
        "short a timeout (and cull_connected) the culler would also take the kernels of "
        "viewers still waiting for their page in the larger rounds.",
    ]


def markdown(out: dict) -> str:
    tables = md_tables(out)
    return report.join(
        report.heading("Dashboard benchmarks", out),
        "### Targets",
        tables["targets"],
        "### Time to interactive (price page)",
        "From navigation start until the price is shown, the form has its inputs and the "
        "loading screen is gone (a MutationObserver in the page).",
        tables["tti"],
        "### Where the time goes",
        tables["timeline"],
        where_time_goes(out),
        "### Interaction latency (price page)",
        tables["latency"],
        "### Kernel memory per viewer",
        "Each page's kernel once the server is quiet, after load and after a few interactions "
        "(price: changes to the form; batch: an upload of every reference sale and two sorts; "
        "report: hovering neighbourhoods). USS is the kernel's own memory, PSS shares the "
        "library pages among the kernels mapping them.",
        tables["memory"],
        "### Concurrent viewers (price page)",
        (
            "The N viewers arrive evenly spread over the first `--arrive-within` seconds"
            if out["conditions"]["arrive_within_s"]
            else "The N viewers arrive at once"
        )
        + " (Conditions); TTI is over the viewers that got a page "
        "(a page whose loading screen went with fewer cell outputs than a healthy one "
        "fails at once: it will never show a price). Memory is taken once all are done, "
        "the peak while they load. The browser runs on the same cores as the server (CPU "
        "column), which a real viewer's does not.",
        tables["viewers"],
        (tables["server"] or tables["crowds"]) and "### What the server spends per viewer",
        (tables["server"] or tables["crowds"])
        and "Process accounting (psutil cpu_times, user + system, of the Voilà process and of "
        "every kernel, children included), so the browser's CPU on the same cores is left "
        "out. One at a time: a preheated load, its 6 changes and the pool's replacement "
        "kernel. A crowd: everything the server spent while the N viewers loaded and priced.",
        tables["server"],
        tables["crowds"],
        "### Conditions",
        md_conditions(out),
        "### Notes",
        out["notes"],
    )


def upgrade(out: dict) -> dict:
    """A record stored before crowds arrived over `--arrive-within` seconds (its viewers all
    came at once, and the server's own CPU was not yet accounted) or before the record kept
    its target settings (read back from its stored target rows), in the current shape."""
    out = dict(out)
    if "arrive_within_s" not in out["conditions"]:
        out["conditions"] = {**out["conditions"], "arrive_within_s": 0.0}
    if "target_settings" not in out:
        rows = {row["figure"]: row["target"] for row in out["targets"]}
        out["target_settings"] = {
            "tti_median_s": {
                name: float(rows[f"TTI, {VARIANTS[name]}"].split("≤")[1].removesuffix(" s"))
                for name in ("preheated_fresh", "cold_fresh")
            }
        }
    return out
