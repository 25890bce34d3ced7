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
  RUN/<target>/<job>.usage      four lines "EPOCH name:ticks:switches ...":
                                before fio, window open, window close,
                                after fio; then "alive 0|1"
  RUN/prims.json                build/bench/prims (full runs only)

CPU per unit: the server processes' CPU ticks and context switches
between the window's two samples (inside fio's measured part, after the
ramp) over units = fio's rate (MB/s for seq jobs, IOPS otherwise) x the
window.  Per job: cpu_us_per_unit {proc: us}, cs_per_io {proc: n}, unit
"MB" or "io"; cpu_us_per_unit_job is the same CPU taken around the whole
fio run (ramp, connect and disconnect included) over the IOs fio counted,
kept as a cross-check.  For crucible targets with prims.json, "ceiling"
holds the model ceiling of the job (see model_ceiling) and the ratios.

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
        "io_mb": (rd["io_bytes"] + wr["io_bytes"]) / 1e6,
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


def read_usage(path):
    """The samples of a .usage file: [(t, {proc: (ticks, switches)})], alive."""
    samples, alive = [], False
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "alive":
                alive = w[1:] == ["1"]
                continue
            procs = {}
            for item in w[1:]:
                name, ticks, cs = item.rsplit(":", 2)
                procs[name] = (int(ticks), int(cs))
            samples.append((float(w[0]), procs))
    return samples, alive


def add_cpu(r, job, path, tck):
    """CPU per unit and context switches per IO of each server process."""
    samples, alive = read_usage(path)
    if len(samples) != 4:
        return
    seq = job.startswith("seq")
    rate = r["mb_s"] if seq else r["iops"]
    ios = r["read_ios"] + r["write_ios"]
    units_job = r["io_mb"] if seq else ios
    r["unit"] = "MB" if seq else "io"
    (tb, b), (t0, w0), (t1, w1), (ta, a) = samples

    def per(d, units):
        return d / units if units else 0.0
    r["cpu_us_per_unit_job"] = {
        p: per((a[p][0] - b[p][0]) / tck * 1e6, units_job) for p in b}
    if not alive:
        # fio ended before the window closed: only the whole run is left.
        r["cpu_window"] = "whole job (fio ended early)"
        r["cpu_us_per_unit"] = dict(r["cpu_us_per_unit_job"])
        r["cs_per_io"] = {}
        return
    win = t1 - t0
    r["cpu_window"] = "measured part"
    r["cpu_window_s"] = win
    r["cpu_us_per_unit"] = {
        p: per((w1[p][0] - w0[p][0]) / tck * 1e6, rate * win) for p in w0}
    r["cs_per_io"] = {
        p: per(w1[p][1] - w0[p][1], r["iops"] * win) for p in w0}


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
                continue
            up = os.path.join(tdir, job + ".usage")
            if os.path.exists(up):
                add_cpu(jobs[job], job, up, cfg.get("clk_tck", 100))
        meta["jobs"] = jobs
        targets[t] = meta
    cfg["results"] = targets
    pp = os.path.join(run, "prims.json")
    if os.path.exists(pp):
        with open(pp) as f:
            cfg["prims"] = json.load(f)
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


MIB_MB = 1048576 / 1e6  # a 1 MiB IO in MB


def short(proc):
    """downstairs0 -> ds0, nbdkit-file0 -> file0 (table cells only)."""
    return proc.replace("downstairs", "ds").replace("nbdkit-file", "file")


def print_cpu_table(cfg, out=sys.stdout):
    """CPU per unit and context switches per IO of each server process."""
    res = cfg["results"]
    print("", file=out)
    print("CPU per unit in each job's measured part: us of CPU per IO (per "
          "MB for seq jobs) of each server process, (context switches per "
          "IO):", file=out)
    print("%-21s  %-14s  %-4s %8s  %s" % ("job", "target", "unit", "total",
                                         "per process"), file=out)
    for job in cfg["jobs"]:
        first = True
        for t in cfg["targets"]:
            r = res[t].get("jobs", {}).get(job)
            name = LABELS.get(job, job) if first else ""
            first = False
            if not r or "cpu_us_per_unit" not in r:
                print("%-21s  %-14s  %s" % (name, t, "-"), file=out)
                continue
            cpu, cs = r["cpu_us_per_unit"], r.get("cs_per_io", {})
            cells = ["%s %s (%s)" % (short(p), fmt(v, digits=1),
                                      "%.1f" % cs[p] if p in cs else "-")
                     for p, v in cpu.items()]
            print("%-21s  %-14s  %-4s %8s  %s" % (
                name, t, r["unit"], fmt(sum(cpu.values()), digits=1),
                ", ".join(cells)), file=out)


def model_ceiling(pr, job, enc):
    """The lowest CPU per unit the pipeline could have for job, from the
    CPU cost of its primitives (prims.json): (upstairs, [each downstairs],
    unit), or None for a job not modelled.  Only the work every IO must
    do: no wake-ups (the streaming TCP figures, as when requests queue),
    no allocation, no bookkeeping.  Encrypted: the upstairs encrypts and
    hashes each block, each downstairs hashes it twice (the on-disk hash
    and the check of the upstairs' hash); reads (verify=fresh) go to one
    replica for data and to the two others for versions."""
    def c(k):
        return pr[k]["cpu_us"]
    up_w = c("gcm_enc_4k") + c("xxh3_4k") if enc else c("xxh3_4k")
    up_r = c("gcm_dec_4k") if enc else c("xxh3_4k")
    ds_w = (2 if enc else 1) * c("xxh3_4k")
    small = c("tcp_send_small") + c("tcp_recv_small")
    if job in ("randwrite32", "randwrite1", "fsync1"):
        up = up_w + 3 * (c("tcp_send_4k") + c("tcp_recv_small"))
        ds = (c("tcp_recv_4k") + ds_w + c("sqlite_txn_1") + c("pwrite_4k")
              + c("tcp_send_small"))
        if job == "fsync1":  # + one flush: a commit and an fdatasync each
            up += 3 * small
            ds += small + c("sqlite_txn_1") + c("fdatasync_4k")
        return up, [ds] * 3, "io"
    if job == "randread32":
        up = (3 * c("tcp_send_small") + c("tcp_recv_4k")
              + 2 * c("tcp_recv_small") + up_r)
        data = (c("tcp_recv_small") + c("pread_4k") + c("sqlite_select_1")
                + c("xxh3_4k") + c("tcp_send_4k"))
        ver = small + c("sqlite_select_1")
        return up, [data, ver, ver], "io"
    if job == "seqwrite":
        up = 256 * up_w + 3 * (c("tcp_send_1m") + c("tcp_recv_small"))
        ds = (c("tcp_recv_1m") + 256 * ds_w + 16 * c("pwrite_64k")
              + c("sqlite_txn_256") + c("tcp_send_small"))
        return up / MIB_MB, [ds / MIB_MB] * 3, "MB"
    if job == "seqread":
        up = (3 * c("tcp_send_small") + c("tcp_recv_1m")
              + 2 * c("tcp_recv_small") + 256 * up_r)
        data = (c("tcp_recv_small") + 16 * c("pread_64k")
                + c("sqlite_select_256") + 256 * c("xxh3_4k")
                + c("tcp_send_1m"))
        ver = small + c("sqlite_select_256")
        return up / MIB_MB, [data / MIB_MB, ver / MIB_MB, ver / MIB_MB], "MB"
    return None


def add_ceilings(cfg):
    """Each crucible job's measured CPU per unit against the ceiling."""
    pr = cfg.get("prims", {}).get("primitives")
    if not pr:
        return
    for t, meta in cfg["results"].items():
        if not t.startswith(CRUCIBLE_PREFIX):
            continue
        for job, r in meta.get("jobs", {}).items():
            cpu = r.get("cpu_us_per_unit")
            try:
                m = model_ceiling(pr, job, t != "crucible-plain")
            except KeyError:
                m = None
            if not cpu or not m:
                continue
            up, ds, unit = m
            dsm = [v for p, v in cpu.items() if p.startswith("downstairs")]
            meas_ds = sum(dsm) / len(dsm) if dsm else 0.0
            total = up + sum(ds)
            r["ceiling"] = {
                "unit": unit, "nbdkit": up, "downstairs": ds,
                "downstairs_mean": sum(ds) / len(ds), "total": total,
                "ratio_total": ratio(sum(cpu.values()), total),
                "ratio_nbdkit": ratio(cpu.get("nbdkit", 0), up),
                "ratio_downstairs": ratio(meas_ds, sum(ds) / len(ds))}


def print_ceiling(cfg, out=sys.stdout):
    """The primitives, then each crucible job against its model ceiling."""
    pr = cfg.get("prims", {}).get("primitives")
    if not pr:
        return
    print("", file=out)
    print("primitives (build/bench/prims, CPU us per op, median):", file=out)
    items = ["%s %.2f" % (k, v["cpu_us"]) for k, v in pr.items()]
    for i in range(0, len(items), 5):
        print("  " + ", ".join(items[i:i + 5]), file=out)
    rows = [(job, t, cfg["results"][t]["jobs"][job])
            for job in cfg["jobs"] for t in cfg["targets"]
            if "ceiling" in cfg["results"][t].get("jobs", {}).get(job, {})]
    if not rows:
        return
    print("model ceiling (lowest CPU per unit the pipeline could have, "
          "docs/PERFORMANCE.md) vs measured:", file=out)
    print("%-21s  %-14s  %-4s %9s %9s %9s %9s  %7s %7s %7s" % (
        "job", "target", "unit", "ceil nbdk", "ceil ds", "ceil tot",
        "meas tot", "x tot", "x nbdk", "x ds"), file=out)
    last = None
    for job, t, r in rows:
        c = r["ceiling"]
        print("%-21s  %-14s  %-4s %9.1f %9.1f %9.1f %9.1f  %7.2f %7.2f %7.2f"
              % (LABELS.get(job, job) if job != last else "", t, c["unit"],
                 c["nbdkit"], c["downstairs_mean"], c["total"],
                 sum(r["cpu_us_per_unit"].values()), c["ratio_total"] or 0,
                 c["ratio_nbdkit"] or 0, c["ratio_downstairs"] or 0),
              file=out)
        last = job
    print("(ceil ds: mean of the three; x = measured / ceiling; randrw is "
          "not modelled)", file=out)


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
            if not sum(r.get("cpu_us_per_unit", {}).values()):
                bad.append("%s/%s: no CPU per unit" % (t, job))
    return bad


def chart(cfg, png, tmp):
    """PNG: throughput relative to nbdkit file, p99 latency (log) and the
    total CPU per unit of the server processes (log)."""
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot not found: chart skipped"
    base = cfg["results"].get(cfg.get("base", "file"), {}).get("jobs", {})
    targets = [t for t in cfg["targets"]
               if cfg["results"][t].get("status") == "ok"]
    def table(name, cell):
        """One data file: a row per job, cell(result, base) per target."""
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write("job " + " ".join('"%s"' % t for t in targets) + "\n")
            for job in cfg["jobs"]:
                row = ['"%s"' % LABELS.get(job, job)]
                for t in targets:
                    r = cfg["results"][t]["jobs"].get(job, {})
                    row.append(cell(r, base.get(job, {})))
                f.write(" ".join(row) + "\n")
        return path

    def rel(r, b):
        ok = "iops" in r and b.get("iops")
        return "%.4f" % (r["iops"] / b["iops"]) if ok else "NaN"

    def p99(r, _b):
        return "%.1f" % r["p99_us"] if r.get("p99_us") else "NaN"

    def cpu_sum(r, _b):
        c = sum(r.get("cpu_us_per_unit", {}).values())
        return "%.1f" % c if c else "NaN"

    dat = table("chart.dat", rel)
    lat = table("chart_lat.dat", p99)
    cpu = table("chart_cpu.dat", cpu_sum)
    n = len(targets)
    script = """
set terminal pngcairo size 1400,1300 noenhanced font ",10"
set output '%(png)s'
set multiplot layout 3,1 title 'crucible-c bench %(ts)s (%(size)d MiB volume, %(rt)ss/job)'
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
set title 'CPU per unit, all server processes (us per IO; per MB for seq jobs)'
set ylabel 'us (log)'
plot for [i=2:%(last)d] '%(cpu)s' using i:xtic(1) title columnheader(i)
unset multiplot
""" % {"png": png, "dat": dat, "lat": lat, "cpu": cpu, "last": n + 1,
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
    add_ceilings(cfg)
    print_table(cfg)
    print_cpu_table(cfg)
    print_ceiling(cfg)
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
