#!/usr/bin/env python3
"""bench/report.py: turn one bench run's fio JSON files into a table,
a results JSON and a gnuplot chart.  Standard library only.

Input layout (written by bench.sh):
  RUN/run.json                  {"mode", "size_mib", "runtime_s", "jobs": [...],
                                 "targets": [...], "base": "file"}
  RUN/<target>/meta.json        {"status": "ok"|"failed", "error": str,
                                 "rss_kib": {proc: kib}, "cpu_s": {proc: s},
                                 "desc": str}
  RUN/<target>/<job>.json       fio --output-format=json+ output

Latencies are completion latencies (clat).  For a mixed job the read and
write histograms are merged before taking percentiles.  For the fsync job
the IOPS are durable write+flush cycles per second and p50/p99 are those
of the flush (fio's "sync" latency).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

LABELS = {
    "seqwrite": "seq write 1M qd8",
    "seqread": "seq read 1M qd8",
    "randwrite32": "rand write 4k qd32",
    "randread32": "rand read 4k qd32",
    "randwrite1": "rand write 4k qd1",
    "fsync1": "write+flush 4k qd1",
    "randrw": "randrw 70/30 16k qd16",
}
CRUCIBLE_PREFIX = "crucible"


def pct_from_bins(bins, q):
    """Percentile q (0..100) of a merged fio histogram {ns: count}."""
    items = sorted((int(k), v) for k, v in bins.items())
    total = sum(v for _, v in items)
    if total == 0:
        return 0.0
    need = total * q / 100.0
    acc = 0
    for ns, count in items:
        acc += count
        if acc >= need:
            return float(ns)
    return float(items[-1][0])


def parse_fio(path, job):
    """One job's figures from a fio json+ file, or raise ValueError."""
    with open(path) as f:
        text = f.read()
    # fio may print warnings before the JSON document.
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON in fio output")
    d = json.loads(text[start:])
    j = d["jobs"][0]
    if j.get("error"):
        raise ValueError("fio error %d" % j["error"])
    rd, wr = j["read"], j["write"]
    out = {
        "mb_s": (rd["bw_bytes"] + wr["bw_bytes"]) / 1e6,
        "iops": rd["iops"] + wr["iops"],
        "read_ios": rd["total_ios"],
        "write_ios": wr["total_ios"],
        "fio_usr_cpu": j.get("usr_cpu"),
        "fio_sys_cpu": j.get("sys_cpu"),
    }
    if job == "fsync1":
        lat = j["sync"]["lat_ns"]
        p = lat.get("percentile", {})
        out["p50_us"] = p.get("50.000000", 0) / 1e3
        out["p99_us"] = p.get("99.000000", 0) / 1e3
        out["flush_ios"] = j["sync"]["total_ios"]
        wp = wr["clat_ns"].get("percentile", {})
        out["write_p50_us"] = wp.get("50.000000", 0) / 1e3
        out["write_p99_us"] = wp.get("99.000000", 0) / 1e3
        out["cycle_mean_us"] = 1e6 / out["iops"] if out["iops"] else 0
        return out
    bins = {}
    for side in (rd, wr):
        for k, v in side["clat_ns"].get("bins", {}).items():
            bins[k] = bins.get(k, 0) + v
    out["p50_us"] = pct_from_bins(bins, 50) / 1e3
    out["p99_us"] = pct_from_bins(bins, 99) / 1e3
    if rd["total_ios"] and wr["total_ios"]:
        for name, side in (("read", rd), ("write", wr)):
            sp = side["clat_ns"].get("percentile", {})
            out[name + "_p50_us"] = sp.get("50.000000", 0) / 1e3
            out[name + "_p99_us"] = sp.get("99.000000", 0) / 1e3
    return out


def load_run(run):
    """Collect run.json, every target's meta and job figures."""
    with open(os.path.join(run, "run.json")) as f:
        cfg = json.load(f)
    targets = {}
    for t in cfg["targets"]:
        tdir = os.path.join(run, t)
        meta = {"status": "failed", "error": "not run"}
        mp = os.path.join(tdir, "meta.json")
        if os.path.exists(mp):
            with open(mp) as f:
                meta = json.load(f)
        jobs = {}
        for job in cfg["jobs"]:
            jp = os.path.join(tdir, job + ".json")
            if not os.path.exists(jp):
                continue
            try:
                jobs[job] = parse_fio(jp, job)
            except (ValueError, KeyError, json.JSONDecodeError) as e:
                jobs[job] = {"error": str(e)}
        meta["jobs"] = jobs
        targets[t] = meta
    cfg["results"] = targets
    return cfg


def ratio(v, base):
    return v / base if base else None


def add_ratios(cfg):
    """Every crucible figure as a ratio to the base target (nbdkit file)."""
    base = cfg["results"].get(cfg.get("base", "file"), {}).get("jobs", {})
    for t, meta in cfg["results"].items():
        if not t.startswith(CRUCIBLE_PREFIX):
            continue
        for job, r in meta.get("jobs", {}).items():
            b = base.get(job)
            if not b or "error" in r or "error" in b:
                continue
            r["vs_base"] = {k: ratio(r[k], b[k])
                            for k in ("mb_s", "iops", "p50_us", "p99_us")}


def fmt(v, r=None, digits=1):
    s = "%.*f" % (digits if v < 1000 else 0, v)
    if r is not None:
        s += " (%.2fx)" % r
    return s


def print_table(cfg, out=sys.stdout):
    """One table: job x target with MB/s, IOPS, p50, p99 (and ratios)."""
    res = cfg["results"]
    w = [21, 14, 14, 14, 16, 16]
    head = ["job", "target", "MB/s", "IOPS", "p50 us", "p99 us"]
    line = "  ".join(h.ljust(w[i]) if i < 2 else h.rjust(w[i])
                     for i, h in enumerate(head))
    print(line.rstrip(), file=out)
    print("-" * len(line.rstrip()), file=out)
    for job in cfg["jobs"]:
        first = True
        for t in cfg["targets"]:
            meta = res[t]
            r = meta.get("jobs", {}).get(job)
            name = LABELS.get(job, job) if first else ""
            first = False
            if meta.get("status") != "ok" and not r:
                cells = ["FAILED", "", "", ""]
            elif not r or "error" in r:
                cells = ["FAILED", "", "", ""]
            else:
                vb = r.get("vs_base", {})
                cells = [fmt(r["mb_s"], vb.get("mb_s")),
                         fmt(r["iops"], vb.get("iops"), 0),
                         fmt(r["p50_us"], vb.get("p50_us")),
                         fmt(r["p99_us"], vb.get("p99_us"))]
            row = [name, t] + cells
            print("  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i])
                            for i, c in enumerate(row)).rstrip(), file=out)
    print("(x) = crucible figure / nbdkit file figure; throughput: higher "
          "is better, latency: lower is better.", file=out)
    print("write+flush: IOPS = durable write+flush cycles/s, p50/p99 = "
          "flush latency.", file=out)
    host = cfg.get("host", {})
    if "loadavg_start" in host:
        la = (host["loadavg_start"][0], host.get("loadavg_end", [0])[0])
        # The load at the end is mostly the benchmark's own processes:
        # only the load before it started says whether others ran.
        busy = la[0] >= (host.get("nproc") or 1)
        print("load average at start %.1f, at end %.1f (includes the "
              "benchmark itself) on %s cores%s" % (
            la[0], la[1], host.get("nproc", "?"),
            " (other work was running: figures are indicative)"
            if busy else "."), file=out)
    print("", file=out)
    print("peak RSS (VmHWM) and CPU seconds of each server process:",
          file=out)
    for t in cfg["targets"]:
        meta = res[t]
        if meta.get("status") != "ok":
            print("  %-16s FAILED: %s" % (t, meta.get("error", "?")),
                  file=out)
            continue
        rss = meta.get("rss_kib", {})
        cpu = meta.get("cpu_s", {})
        parts = ["%s %.1f MiB %.1fs" % (p, rss[p] / 1024.0, cpu.get(p, 0))
                 for p in rss]
        print("  %-16s %s" % (t, ", ".join(parts)), file=out)


def smoke_check(cfg):
    """Problems that make a smoke run fail: failures and zero figures."""
    bad = []
    for t in cfg["targets"]:
        meta = cfg["results"][t]
        if meta.get("status") != "ok":
            bad.append("%s: %s" % (t, meta.get("error", "failed")))
            continue
        for job in cfg["jobs"]:
            r = meta["jobs"].get(job)
            if not r or "error" in r:
                bad.append("%s/%s: %s" % (t, job, (r or {}).get(
                    "error", "missing")))
                continue
            for k in ("mb_s", "iops", "p50_us", "p99_us"):
                if not r.get(k):
                    bad.append("%s/%s: %s is zero" % (t, job, k))
    return bad


def chart(cfg, png, tmp):
    """PNG: throughput relative to nbdkit file, and p99 latency (log)."""
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot not found: chart skipped"
    base = cfg["results"].get(cfg.get("base", "file"), {}).get("jobs", {})
    targets = [t for t in cfg["targets"]
               if cfg["results"][t].get("status") == "ok"]
    dat = os.path.join(tmp, "chart.dat")
    with open(dat, "w") as f:
        f.write("job " + " ".join('"%s"' % t for t in targets) + "\n")
        for job in cfg["jobs"]:
            row = ['"%s"' % LABELS.get(job, job)]
            for t in targets:
                r = cfg["results"][t]["jobs"].get(job, {})
                b = base.get(job, {})
                ok = "iops" in r and b.get("iops")
                row.append("%.4f" % (r["iops"] / b["iops"]) if ok else "NaN")
            f.write(" ".join(row) + "\n")
    lat = os.path.join(tmp, "chart_lat.dat")
    with open(lat, "w") as f:
        f.write("job " + " ".join('"%s"' % t for t in targets) + "\n")
        for job in cfg["jobs"]:
            row = ['"%s"' % LABELS.get(job, job)]
            for t in targets:
                r = cfg["results"][t]["jobs"].get(job, {})
                row.append("%.1f" % r["p99_us"] if r.get("p99_us")
                           else "NaN")
            f.write(" ".join(row) + "\n")
    n = len(targets)
    script = """
set terminal pngcairo size 1400,900 noenhanced font ",10"
set output '%(png)s'
set multiplot layout 2,1 title 'crucible-c bench %(ts)s (%(size)d MiB volume, %(rt)ss/job)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key outside right top
set grid ytics
set title 'throughput relative to nbdkit file (1.0 = nbdkit file)'
set ylabel 'x nbdkit file'
set yrange [0:*]
plot for [i=2:%(last)d] '%(dat)s' using i:xtic(1) title columnheader(i)
set title 'p99 completion latency (flush latency for write+flush)'
set ylabel 'us (log)'
set logscale y
set yrange [*:*]
plot for [i=2:%(last)d] '%(lat)s' using i:xtic(1) title columnheader(i)
unset multiplot
""" % {"png": png, "dat": dat, "lat": lat, "last": n + 1,
       "ts": cfg.get("timestamp", ""), "size": cfg.get("size_mib", 0),
       "rt": cfg.get("runtime_s", "?")}
    sp = os.path.join(tmp, "chart.gp")
    with open(sp, "w") as f:
        f.write(script)
    p = subprocess.run([gp, sp], capture_output=True, text=True)
    if p.returncode != 0:
        # pngcairo may be missing: fall back to the plain png terminal.
        with open(sp, "w") as f:
            f.write(script.replace("pngcairo", "png"))
        p = subprocess.run([gp, sp], capture_output=True, text=True)
        if p.returncode != 0:
            return "gnuplot failed: " + p.stderr.strip()[:300]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--json", help="write the results JSON here")
    ap.add_argument("--png", help="write the chart here")
    ap.add_argument("--smoke", action="store_true",
                    help="exit 1 on any failure or zero figure")
    a = ap.parse_args()
    cfg = load_run(a.run)
    cfg.setdefault("host", {})["loadavg_end"] = os.getloadavg()
    add_ratios(cfg)
    print_table(cfg)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(cfg, f, indent=1, sort_keys=True)
            f.write("\n")
    if a.png:
        msg = chart(cfg, a.png, a.run)
        if msg:
            print("chart: " + msg)
    if a.smoke:
        bad = smoke_check(cfg)
        for b in bad:
            print("smoke: FAIL " + b, file=sys.stderr)
        if bad:
            return 1
        print("smoke: all figures non-zero")
    return 0


if __name__ == "__main__":
    sys.exit(main())
