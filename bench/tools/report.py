#!/usr/bin/python3
"""Turns the records run.sh collected into the markdown result tables.

usage: report.py META RECORDS > out.md
META: key<TAB>value lines (printed as the header). RECORDS: one line per measured run:
table, contender, is_reference (1/0), metric, value, p50_ms, p99_ms, rss_kib, errors, cpu, note
(cpu: the server's CPU time per request/connection in µs, or per GiB in ms for MiB/s).
Rows keep the order in which contenders first appear; values are averaged over rounds and each
round is listed so that the noise is visible; with three rounds or more the medians follow the table.
"""
import statistics
import sys


def fmt(v, digits=0):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def main():
    meta_path, rec_path = sys.argv[1], sys.argv[2]
    meta = []
    with open(meta_path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "\t" in line:
                meta.append(line.split("\t", 1))
    tables = {}  # table -> {contender -> dict}
    with open(rec_path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 11:
                continue
            table, who, ref, metric, value, p50, p99, rss, errors, cpu, note = parts
            t = tables.setdefault(table, {"metric": metric, "rows": {}})
            r = t["rows"].setdefault(who, {"ref": ref == "1", "values": [], "p50": [], "p99": [],
                                           "rss": 0, "errors": 0, "cpu": [], "note": ""})
            if value:
                r["values"].append(float(value))
            if p50:
                r["p50"].append(float(p50))
            if p99:
                r["p99"].append(float(p99))
            if cpu:
                r["cpu"].append(float(cpu))
            if rss:
                r["rss"] = max(r["rss"], int(rss))
            if errors:
                r["errors"] += int(errors)
            if note:
                r["note"] = note

    out = []
    title = dict(meta).get("title", "Bastion benchmark")
    out.append(f"# {title}\n")
    for k, v in meta:
        if k != "title":
            out.append(f"- {k}: {v}")
    out.append("")
    for table, t in tables.items():
        metric = t["metric"]
        digits = 1 if metric in ("MiB/s",) else 0
        rows = t["rows"]
        ref = next((r for r in rows.values() if r["ref"] and r["values"]), None)
        ref_name = next((n for n, r in rows.items() if r["ref"]), None)
        ref_mean = statistics.mean(ref["values"]) if ref else None
        ref_p99 = statistics.mean(ref["p99"]) if ref and ref["p99"] else None
        out.append(f"## {table}\n")
        has_lat = any(r["p50"] for r in rows.values())
        head = f"| contender | {metric} (mean) | runs |"
        sep = "| --- | ---: | --- |"
        if has_lat:
            head += " p50 ms | p99 ms |"
            sep += " ---: | ---: |"
        cpu_unit = {"req/s": "CPU µs/req", "conn/s": "CPU µs/conn", "MiB/s": "CPU ms/GiB"}.get(metric, "CPU")
        head += f" {cpu_unit} | peak RSS MiB | errors | {metric} vs {ref_name} |"
        sep += " ---: | ---: | ---: | ---: |"
        if has_lat:
            head += f" p99 vs {ref_name} |"
            sep += " ---: |"
        out.append(head)
        out.append(sep)
        order = sorted(rows.items(), key=lambda kv: (not kv[1]["ref"], not kv[1]["values"]))
        for who, r in order:
            name = f"**{who}**" if who.startswith("bastion") else who
            if not r["values"]:
                cells = [name, r["note"] or "n/a", "-"]
                if has_lat:
                    cells += ["-", "-"]
                cells += ["-", "-", "-", "-"]
                if has_lat:
                    cells += ["-"]
                out.append("| " + " | ".join(cells) + " |")
                continue
            mean = statistics.mean(r["values"])
            runs = " / ".join(fmt(v, digits) for v in r["values"])
            cells = [name, fmt(mean, digits), runs]
            p99 = statistics.mean(r["p99"]) if r["p99"] else None
            if has_lat:
                cells += [fmt(statistics.mean(r["p50"]), 2) if r["p50"] else "-", fmt(p99, 2)]
            cells += [fmt(statistics.mean(r["cpu"]), 1 if metric != "MiB/s" else 0) if r["cpu"] else "-"]
            cells += [fmt(r["rss"] / 1024, 1) if r["rss"] else "-", str(r["errors"])]
            cells += [f"{mean / ref_mean:.2f}x" if ref_mean else "-"]
            if has_lat:
                cells += [f"{p99 / ref_p99:.2f}x" if ref_p99 and p99 is not None else "-"]
            out.append("| " + " | ".join(cells) + " |")
        notes = [f"{who}: {r['note']}" for who, r in rows.items() if r["note"] and r["values"]]
        # With three rounds or more one disturbed round moves a mean a lot (the FTP rows swing 250-1,700 MiB/s):
        # the medians go beside it.
        if any(len(r["values"]) >= 3 for r in rows.values()):
            ref_median = statistics.median(ref["values"]) if ref else None
            medians = []
            for who, r in order:
                if r["values"]:
                    m = statistics.median(r["values"])
                    ratio = f" ({m / ref_median:.2f}x)" if ref_median and not r["ref"] else ""
                    medians.append(f"{who} {fmt(m, digits)}{ratio}")
            notes.append(f"medians of the rounds ({metric}): " + ", ".join(medians))
        if notes:
            out.append("")
            out.extend(f"- {n}" for n in notes)
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
