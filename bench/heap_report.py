#!/usr/bin/env python3
"""heap_report.py - the live heap of N idle connections by who allocated it, from heaptrack.

usage: heaptrack_print -f FILE -p 0 -a 0 -T 0 -l 1 -m 0 -n 1000000 -s 1000000 | heap_report.py N

The server was killed while N connections were open, so heaptrack's "leaked" bytes are the heap
live at that moment. Each allocation site (one backtrace) counts as per connection when it has
at least N/2 live allocations; the rest is the process's fixed heap (config, OpenSSL's tables,
the loop). A site is named by the first function of its backtrace (innermost first) found in
GROUPS, else by the library that called the allocator. Prints a markdown table.
"""
import re
import sys

# Innermost match wins: an SSL object's own allocation passes through SSL_new, a cipher
# context through EVP_CipherInit_ex even when the handshake (unnamed libssl code) called it.
GROUPS = [
    ("SSL_new", "the SSL object and its CERT copy (`SSL_new`)"),
    ("EVP_CipherInit_ex", "the record layer's cipher contexts (`EVP_CipherInit_ex`)"),
    ("EVP_MD_CTX_copy_ex", "the handshake hash kept by TLS 1.3 (`EVP_MD_CTX_copy_ex`)"),
    ("bufferevent_openssl_socket_new", "libevent's bufferevent_openssl, its BIO and evbuffers"),
    # libevent_openssl's own functions have no symbols: its allocations show wsgate's caller.
    ("tls_bufferevent_new", "libevent's bufferevent_openssl, its BIO and evbuffers"),
    ("transport_plain_new", "wsgate's plain transport"),
    ("transport_server_new", "wsgate's transport head"),
    ("conn_new", "wsgate's struct conn (`conn_new`)"),
]
WRAPPERS = {"malloc", "calloc", "realloc", "CRYPTO_malloc", "CRYPTO_zalloc", "CRYPTO_realloc",
            "CRYPTO_memdup", "CRYPTO_strdup", "CRYPTO_strndup", "CRYPTO_clear_realloc",
            "event_mm_malloc_", "event_mm_calloc_", "event_mm_realloc_", "mm_malloc", "mm_calloc"}
UNIT = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9}


def lib_of(path):
    m = re.search(r"/(lib[a-z_]+?)(-[\d.]+)?\.so", path)
    if m:
        return {"libssl": "OpenSSL", "libcrypto": "OpenSSL"}.get(m.group(1), m.group(1))
    return "wsgate" if path.endswith("wsgate") else path.rsplit("/", 1)[-1]


def main():
    n = int(sys.argv[1])
    entries, cur = [], None
    for line in sys.stdin:
        m = re.match(r"^([\d.]+)([KMG]?B?) leaked over (\d+) calls from", line)
        if m:
            cur = {"bytes": float(m.group(1)) * UNIT[m.group(2)], "calls": int(m.group(3)), "frames": []}
            entries.append(cur)
            continue
        if cur is None:
            continue
        s = line.strip()
        if s.startswith("in "):
            if cur["frames"]:
                cur["frames"][-1][1] = s[3:]
        elif s and not s.startswith("at "):
            cur["frames"].append([s, ""])
    per, fixed, total = {}, 0.0, 0.0
    for e in entries:
        total += e["bytes"]
        if e["calls"] < n / 2:
            fixed += e["bytes"]
            continue
        name = None
        for fn, _ in e["frames"]:
            name = next((label for g, label in GROUPS if fn == g), None)
            if name:
                break
        if name is None:
            callers = [f for f in e["frames"] if f[0] not in WRAPPERS]
            name = f"other, allocated by {lib_of(callers[0][1]) if callers else '?'}"
        per[name] = per.get(name, 0.0) + e["bytes"]
    print("| allocated through | bytes per connection |")
    print("|---|---|")
    for name, b in sorted(per.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {b / n:,.0f} |")
    print(f"| **per connection, in all** | **{sum(per.values()) / n:,.0f}** |")
    print(f"| the process's fixed heap (sites with fewer than {n // 2:,} live allocations), not per connection | {fixed / 1024:,.0f} KiB |")
    print(f"\nheaptrack: {total / 1e6:.2f} MB live in all, {len(entries):,} allocation sites.")


if __name__ == "__main__":
    main()
