#!/usr/bin/env python3
"""profile_report.py - one markdown paragraph from what bench_profile (lib.sh) captured.

usage: profile_report.py PREFIX LABEL EVENTS UNIT [SECONDS]

PREFIX.stat is `perf stat -x,` (task-clock and every system call entered), PREFIX.dso and
PREFIX.sym are `perf report -q` by object and by symbol (cpu-clock samples: this VM has no PMU,
so the kernel's time cannot be split by hardware event). EVENTS is how many UNITs (messages,
deliveries, ping cycles) the process handled in the window; every count is given per UNIT.
Prints the paragraph, starting with a machine-readable comment run-all.sh reads:
<!-- profile label="..." kernel_pct=.. cpu_ns_per_unit=.. syscalls_per_unit=.. -->
"""
import re
import sys


def short(dso):
    if dso.startswith("[kernel"):
        return "kernel"
    m = re.match(r"(lib[a-z_]+?)(-[\d.]+)?\.so", dso)
    return m.group(1) if m else dso


def main():
    pre, label, events, unit = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    secs = sys.argv[5] if len(sys.argv) > 5 else "?"
    events = max(events, 1.0)
    task_ms, calls = None, {}
    try:
        for line in open(pre + ".stat"):
            f = line.strip().split(",")
            if len(f) < 3 or not re.match(r"^[\d.]+$", f[0]):
                continue
            if f[2] == "task-clock":
                task_ms = float(f[0])
            elif f[2].startswith("syscalls:sys_enter_") and float(f[0]) > 0:
                calls[f[2][len("syscalls:sys_enter_"):]] = float(f[0])
    except OSError:
        pass
    dsos = {}
    try:
        for line in open(pre + ".dso"):
            m = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
            if m:
                name = short(m.group(2))
                dsos[name] = dsos.get(name, 0.0) + float(m.group(1))
    except OSError:
        pass
    syms = []
    try:
        for line in open(pre + ".sym"):
            m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[k.]\]\s+(.+)$", line)
            if m and len(syms) < 8:
                syms.append(f"{m.group(3).strip()} ({short(m.group(2))}) {float(m.group(1)):.1f} %")
    except OSError:
        pass
    if not dsos and task_ms is None:
        print(f"<!-- profile label=\"{label}\" missing=1 -->")
        print(f"- **{label}**: no profile (perf missing or not permitted: needs root or "
              "kernel.perf_event_paranoid ≤ 1, and Debian's linux-perf)")
        return
    total_calls = sum(calls.values())
    cpu = task_ms * 1e6 / events if task_ms is not None else float("nan")
    kern = dsos.get("kernel", 0.0)
    print(f"<!-- profile label=\"{label}\" kernel_pct={kern:.1f} cpu_ns_per_unit={cpu:.0f} "
          f"syscalls_per_unit={total_calls / events:.3f} -->")
    by_obj = ", ".join(f"{k} {v:.1f} %" for k, v in sorted(dsos.items(), key=lambda kv: -kv[1]) if v >= 0.5)
    top_calls = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
    call_txt = ", ".join(f"{k} {v / events:.3f}" for k, v in top_calls)
    units = unit[:-1] + "ies" if unit.endswith("y") else unit + "s"
    print(f"- **{label}** ({secs} s, {events:,.0f} {units} in the window): CPU {cpu:,.0f} ns per {unit} "
          f"(perf stat task-clock, {task_ms or 0:,.0f} ms); samples by object: {by_obj}; "
          f"system calls per {unit}: {total_calls / events:.3f} in all ({call_txt}); "
          f"top symbols: {'; '.join(syms) if syms else 'n/a'}.")


if __name__ == "__main__":
    main()
