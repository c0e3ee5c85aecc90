"""The report of bench/event_latency.py: the rows, ratios against the floor and the stock path,
open and close, and the targets of one ASGI process."""

from __future__ import annotations

from bench._stack import log
from bench.fanout import P99_BUDGET_MS

HEADER = (f"{'':24} {'sockets':>7} {'ev/s/sock':>9} {'deliv/s':>8} {'delivered/expected':>20} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'srv CPU%':>8} {'srv RSS MB':>10} {'client CPU%':>11} {'srv errors':>10}")

def format_row(r: dict) -> str:
    clients = "+".join(f"{c:.0f}" for c in r["client_cpu"])
    return (f"{r['label'][:24]:24} {r['sockets']:>7,} {r['rate']:>9g} {r['dps']:>8,.0f} "
            f"{r['delivered']:>9,}/{r['expected']:<10,} {r['p50']:>7.1f} {r['p99']:>7.1f} {r['max']:>7.1f} "
            f"{r['srv_cpu']:>8.0f} {r['srv_rss']:>10.0f} {clients:>11} {r['srv_errors']:>10}")

def report(rows: list[dict], closes: list[dict], checks: list[dict]):
    """Every row, then the ratios, open and close, and the targets."""
    _rows(rows)
    capacity = _ratios(rows)
    _open_close(closes)
    _targets(rows, capacity, checks)


def _rows(rows: list[dict]):
    log("\n" + "=" * 118)
    log("RESULTS  (latency = receipt in the client - time.time() in the publisher, same machine clock;")
    log("          deliv/s = delivered / (last receipt - first publish); CPU% of one core, averaged over the")
    log("          publishing window; client CPU% per client process)")
    log("=" * 118)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["label"], []).append(r)
    log(HEADER)
    for label, rs in groups.items():
        for r in rs:
            log(format_row(r))
    log("")
    log("details: publish call p50/p99 ms, publisher behind schedule (max ms), server CPU time per delivery,")
    log("other processes' CPU% on the machine during the window, order errors, unexpected closes")
    for r in rows:
        log(f"  {r['label'][:24]:24} {r['sockets']:>5} x {r['rate']:<5g} publish {r['pub_call_p50']:.2f}/"
            f"{r['pub_call_p99']:.2f} ms, behind {r['pub_behind']:.0f} ms, server {r['srv_us_per_delivery']:.0f} us CPU/delivery, "
            f"server waiting for a CPU {max(0.0, r['srv_wait']):.0f}% of the time, "
            f"other CPU {r['other_cpu']:.0f}%, "
            f"RSS peak {r['srv_rss_peak']:.0f} MB, order errors {r['order_errors']}, "
            f"unexpected closes {r['unexpected_closes']}"
            + (f" {r['close_reasons'][:1]}" if r["close_reasons"] else "")
            + (f", srv tracebacks {r['srv_errors']}" if r["srv_errors"] else "")
            + (f", other events received {r['strays']}" if r["strays"] else "")
            + ("" if r["delivered"] == r["expected"] else f", undelivered after {r['drained_in']:.0f} s drain: "
               f"{r['expected'] - r['delivered']:,}"))
    for r in rows:
        if any(c >= 90 for c in r["client_cpu"]):
            log(f"  WARNING: a client process was saturated in {r['label']} {r['sockets']} x {r['rate']:g} "
                f"({r['client_cpu']}); that row's latency includes client queueing")


def _ratios(rows: list[dict]) -> float:
    """Ours against the floor, the stock path and daphne; returns our capacity at 100 sockets."""
    floor = next((r for r in rows if r["mode"] == "floor"), None)
    ours = [r for r in rows if r["label"].startswith("ours/uvicorn")]
    stock = [r for r in rows if r["label"].startswith("stock")]
    daphne = [r for r in rows if r["label"].startswith("ours/daphne")]

    def capacity(rs, n):
        ok = [r["rate"] * r["sockets"] for r in rs if r["sockets"] == n and r["ok"]]
        return max(ok) if ok else 0.0

    log("\nRATIOS")
    if floor:
        log(f"  floor (raw Redis PUBLISH -> SUBSCRIBE): p50 {floor['p50']:.2f} ms, p99 {floor['p99']:.2f} ms, "
            f"max {floor['max']:.2f} ms")
        for r in ours + daphne + stock:
            log(f"  {r['label'][:24]:24} {r['sockets']:>5} x {r['rate']:<5g} p50 {r['p50'] / floor['p50']:6.1f}x floor,"
                f" p99 {r['p99'] / floor['p99']:7.1f}x floor")
    for n in sorted({r["sockets"] for r in stock}):
        for s in [r for r in stock if r["sockets"] == n]:
            o = next((r for r in ours if r["sockets"] == n and r["rate"] == s["rate"]), None)
            if o:
                log(f"  {n} sockets x {s['rate']:g}/s, ours vs stock: p99 {o['p99']:.1f} vs {s['p99']:.1f} ms "
                    f"({s['p99'] / o['p99']:.1f}x lower), delivered {o['delivered'] / o['expected']:.1%} vs "
                    f"{s['delivered'] / s['expected']:.1%}, server CPU {o['srv_cpu']:.0f}% vs {s['srv_cpu']:.0f}%")
    cap_ours, cap_stock, cap_daphne = capacity(ours, 100), capacity(stock, 100), capacity(daphne, 100)
    if cap_ours or cap_stock:
        log(f"  deliveries/s at 100 sockets with p99 <= {P99_BUDGET_MS:g} ms and 0 lost (highest rate tried):"
            f" ours/uvicorn {cap_ours:,.0f}, ours/daphne {cap_daphne:,.0f}, stock {cap_stock:,.0f}")
        if cap_stock:
            log(f"  ours / stock capacity: {cap_ours / cap_stock:.1f}x")
        elif stock:
            lowest = min((r["rate"] * r["sockets"] for r in stock if r["sockets"] == 100), default=0)
            log(f"  ours / stock capacity: more than {cap_ours / lowest:.0f}x (stock failed at every rate tried, "
                f"the lowest {lowest:,.0f} deliveries/s)" if lowest else "  stock: no 100-socket point")
        if cap_daphne:
            log(f"  uvicorn / daphne capacity: {cap_ours / cap_daphne:.2f}x")
    for r in daphne:
        u = next((o for o in ours if o["sockets"] == r["sockets"] and o["rate"] == r["rate"]), None)
        if u:
            log(f"  {r['sockets']} sockets x {r['rate']:g}/s, uvicorn vs daphne: p99 {u['p99']:.1f} vs "
                f"{r['p99']:.1f} ms, server CPU {u['srv_cpu']:.0f}% vs {r['srv_cpu']:.0f}%")
    if daphne:
        pairs = [(u, d) for d in daphne for u in ours if (u["sockets"], u["rate"]) == (d["sockets"], d["rate"])]
        cpu_u = sum(u["srv_us_per_delivery"] for u, _ in pairs) / len(pairs) if pairs else 0.0
        cpu_d = sum(d["srv_us_per_delivery"] for _, d in pairs) / len(pairs) if pairs else 0.0
        if pairs:
            log(f"  server CPU per delivery at the same points: uvicorn {cpu_u:.0f} us, daphne {cpu_d:.0f} us "
                f"(one core would carry about {1e6 / cpu_u:,.0f} vs {1e6 / cpu_d:,.0f} deliveries/s)")
        faster = ("uvicorn" if cpu_u <= cpu_d else "daphne") if pairs else ("uvicorn" if cap_ours >= cap_daphne else "daphne")
        log(f"  faster server in this run: {faster} (less server CPU per delivery at the same load; highest passing "
            f"rate at 100 sockets: uvicorn {cap_ours:,.0f}, daphne {cap_daphne:,.0f} deliveries/s)")
    return cap_ours


def _open_close(closes: list[dict]):
    log("\nOPEN AND CLOSE (each scenario opens its sockets, then closes them all at once)")
    for c in closes:
        o, k = c["opened"], c["closed"]
        log(f"  {c['label'][:24]:24} {c['n']:>5} sockets: opened {o['opened']} in {o['secs']:.1f} s ({o['errors']} errors), "
            f"closed in {k['secs']:.1f} s ({k['errors']} client errors, {k['unclean']} unclean), server tracebacks "
            f"{c['tracebacks']} (\"Too many connections\": {c['too_many']})")


def _targets(rows: list[dict], cap_ours: float, checks: list[dict]):
    ours = [r for r in rows if r["label"].startswith("ours/uvicorn")]
    log("\nTARGETS (one ASGI process)")
    t1 = next((r for r in ours if r["sockets"] == 1000 and r["rate"] == 5), None)
    if t1:
        ok = t1["delivered"] == t1["expected"] and t1["p99"] < P99_BUDGET_MS
        log(f"  {'PASS' if ok else 'FAIL'}  1,000 sockets x 5 events/s: lost {t1['expected'] - t1['delivered']}, "
            f"p99 {t1['p99']:.1f} ms (target: 0 lost, p99 < 100 ms)")
    else:
        log("  SKIP  1,000 sockets x 5 events/s (not run)")
    if any(r["sockets"] == 100 for r in ours):
        ok = cap_ours >= 10_000
        log(f"  {'PASS' if ok else 'FAIL'}  100 sockets: {cap_ours:,.0f} deliveries/s with p99 <= 100 ms and 0 lost "
            f"(target: >= 10,000)")
    else:
        log("  SKIP  100 sockets >= 10,000 deliveries/s (not run)")
    check = next((c for c in checks if c["n"] == 2000), None)
    if check:
        o, c = check["opened"], check["closed"]
        ok = (o["opened"] == 2000 and o["errors"] == 0 and c["errors"] == 0 and c["unclean"] == 0
              and not check["problems"] and check["alive"] and check["received_all"]
              and not check["unexpected_closes"])
        log(f"  {'PASS' if ok else 'FAIL'}  2,000 sockets opened ({o['opened']}, {o['errors']} errors, "
            f"{o['secs']:.1f} s), all received every event: {check['received_all']}, closed at once "
            f"({c['errors']} client errors, {c['unclean']} unclean, {c['secs']:.1f} s), server log problems: "
            f"{len(check['problems'])}" + (f" {check['problems'][:2]}" if check["problems"] else ""))
    else:
        log("  SKIP  2,000 sockets open/close (not run)")
