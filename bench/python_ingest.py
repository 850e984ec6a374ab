#!/usr/bin/env python3
"""Python ingest speed through the ctypes binding: from dicts and from
protobuf-delimited bytes, on the generated stream the C++ benchmarks use.

    RAPPORT_LIBRARY=build/release/lib/librapport.so PYTHONPATH=bindings/python \\
        python3 bench/python_ingest.py --events 500000 --repeat 3

The stream comes from c_api_bench_cpp (rapport::testing::GenerateStream,
found next to the library at ../bench/, or --helper): delimited protobuf and
the same events as JSON lines. The dicts are built from the JSON lines before
the clock starts, with 64-bit integers as Python ints as a host would write
them. Each run ingests the whole stream into a fresh engine (created before
the clock starts); the figure is the median of --repeat runs.

Targets (issue 6): >= 300 000 events/s from dicts, >= 2 000 000 events/s
from protobuf bytes. The engine's own ingest rate (the C++ API, core_bench
and c_api_bench) bounds the second figure; --no-rules also shows it without
the regulations (an empty rule set).

The last lines put the Python layer's own cost apart from the engine's
(and, from dicts, the time of each share: json.dumps, the library's JSON
parse, the engine's ingest, decoding the result):
c_api_bench_cpp --time-cpp runs what a C++ host does with the same bytes in
the same batches (parse each into an arena EventBatch, IngestBatch), in runs
paired with the Python ones (one each, alternately), and the ratio of the
rates per CPU second is the median over the pairs (1.00: Python costs
nothing over C++).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import rapport
from rapport.engine import _ints


def split_delimited(data, per_chunk):
    """The delimited stream cut into chunks of `per_chunk` events (bytes), as
    a host reading a socket or file would hand them over."""
    chunks, start, at, count = [], 0, 0, 0
    n = len(data)
    while at < n:
        length, shift = 0, 0
        while True:
            b = data[at]
            at += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        at += length
        count += 1
        if count == per_chunk:
            chunks.append(data[start:at])
            start, count = at, 0
    if start < n:
        chunks.append(data[start:])
    return chunks


def timed(config, feed, repeat):
    """Median events per wall second and per CPU second of the process (all
    its threads): on a shared machine the second is the steadier figure."""
    wall, cpu = [], []
    for _ in range(repeat):
        with rapport.Engine(config) as engine:
            start, start_cpu = time.perf_counter(), time.process_time()
            accepted = feed(engine)
            elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        wall.append(accepted / elapsed)
        cpu.append(accepted / elapsed_cpu)
    return statistics.median(wall), statistics.median(cpu), wall


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=rapport.DEFAULT_BATCH_SIZE)
    parser.add_argument("--helper", help="path to c_api_bench_cpp")
    parser.add_argument("--no-rules", action="store_true",
                        help="an empty rule set (no regulations)")
    args = parser.parse_args()

    helper = args.helper or os.path.join(
        os.path.dirname(os.path.realpath(os.environ.get("RAPPORT_LIBRARY", "."))), "..",
        "bench", "c_api_bench_cpp")
    with tempfile.TemporaryDirectory() as tmp:
        pb_path, json_path = os.path.join(tmp, "stream.bin"), os.path.join(tmp, "stream.json")
        subprocess.run([helper, f"--write-stream={pb_path}", f"--write-json={json_path}"],
                       env=dict(os.environ, RAPPORT_BENCH_EVENTS=str(args.events)), check=True)
        with open(pb_path, "rb") as f:
            stream = f.read()
        with open(json_path) as f:
            dicts = [_ints(json.loads(line)) for line in f]
    n = len(dicts)
    config = {"rule_set": {"id": "none", "version": 1}} if args.no_rules else None
    chunks = split_delimited(stream, args.batch_size)
    print(f"rapport {rapport.version_number()}, {n} generated events, "
          f"batches of {args.batch_size}, {'no rules' if args.no_rules else 'default playbook'}, "
          f"median of {args.repeat}")

    def from_dicts(engine):
        return engine.ingest(dicts, batch_size=args.batch_size)["accepted"]

    def from_bytes(engine):
        return sum(engine.ingest(c)["accepted"] for c in chunks)

    def from_one_bytes(engine):
        return engine.ingest(stream)["accepted"]

    def from_bytes_no_actions(engine):
        return sum(engine.ingest(c, actions=False)["accepted"] for c in chunks)

    def from_dicts_no_actions(engine):
        return engine.ingest(dicts, batch_size=args.batch_size, actions=False)["accepted"]

    for name, feed in (("dicts (Engine.ingest(list of dicts))", from_dicts),
                       ("protobuf-delimited bytes, one call per batch", from_bytes),
                       ("protobuf-delimited bytes, the whole stream in one call",
                        from_one_bytes),
                       ("dicts, actions=False", from_dicts_no_actions),
                       ("protobuf-delimited bytes per batch, actions=False",
                        from_bytes_no_actions)):
        wall, cpu, rates = timed(config, feed, args.repeat)
        print(f"  {name:58s} {wall:>10,.0f} events/s wall, {cpu:>10,.0f} per CPU second "
              f"(wall runs: {', '.join(f'{r:,.0f}' for r in rates)})")

    # Python against the C++ API on the same bytes, paired runs.
    with tempfile.TemporaryDirectory() as tmp:
        pb_path = os.path.join(tmp, "stream.bin")
        with open(pb_path, "wb") as f:
            f.write(stream)
        cmd = [helper, f"--time-cpp={pb_path}", f"--batch={args.batch_size}", "--repeat=1"]
        if args.no_rules:
            cmd.append("--no-rules")

        def cpp_run():
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            accepted, wall, cpu = out.split()
            return int(accepted) / float(wall), int(accepted) / float(cpu)

        for name, feed in (("per batch, actions=False", from_bytes_no_actions),
                           ("per batch, with actions", from_bytes)):
            ratios, cpp_cpu, py_cpu = [], [], []
            for i in range(args.repeat):
                if i % 2 == 0:
                    c = cpp_run()
                    _, p, _ = timed(config, feed, 1)
                else:
                    _, p, _ = timed(config, feed, 1)
                    c = cpp_run()
                cpp_cpu.append(c[1])
                py_cpu.append(p)
                ratios.append(p / c[1])
            print(f"  protobuf bytes {name}: Python {statistics.median(py_cpu):,.0f}, C++ API "
                  f"{statistics.median(cpp_cpu):,.0f} events per CPU second; Python/C++ "
                  f"{statistics.median(ratios):.3f} (pairs: "
                  f"{', '.join(f'{r:.3f}' for r in ratios)})")

    # The binding's own cost, interleaved chunk by chunk in this process (as
    # c_api_bench compares the C ABI with the C++ API): Engine.ingest(chunk)
    # on one engine against the bare ctypes call of the C ABI on another,
    # alternating which goes first, and from one repeat to the next which
    # engine is whose (the engine created first measures about 1 % slower);
    # the median over the chunks of the ratio of their CPU times (thread
    # time: each call runs on this thread).
    from rapport import _ffi
    for name, want in (("actions=False", False), ("with actions", True)):
        ratios = []
        for r in range(max(2, args.repeat)):
            with rapport.Engine(config) as first, rapport.Engine(config) as second:
                binding, bare = (first, second) if r % 2 == 0 else (second, first)
                for k, c in enumerate(chunks):
                    t = [0.0, 0.0]
                    for side in ((0, 1) if k % 2 == 0 else (1, 0)):
                        start = time.thread_time()
                        if side == 0:
                            binding.ingest(c, actions=want)
                        else:
                            out = _ffi.OutBuffer()
                            _ffi.rapport_ingest_batch_v2(
                                *out.args(), bare._h(), c, len(c),
                                _ffi.FORMAT_PROTOBUF_DELIMITED, _ffi.BATCH_ATOMIC,
                                _ffi.FORMAT_JSON if want else _ffi.FORMAT_PROTOBUF)
                            out.take()
                        t[side] = time.thread_time() - start
                    ratios.append(t[0] / t[1])
        print(f"  protobuf bytes per batch, {name}: Engine.ingest over the bare C call, median "
              f"per chunk: {100 * (statistics.median(ratios) - 1):+.1f} %")
    # Where the time from dicts goes, each share timed alone on this thread
    # (thread CPU time, best of --repeat): the binding's json.dumps of each
    # chunk (Python, under the GIL), the C call (the library's JSON parse and
    # the engine's ingest, without the GIL) and the result's decoding; and
    # the parse alone, from the same chunk behind one event that parses but
    # that the engine refuses (no event_id): the library parses the whole
    # chunk, then the atomic batch fails at its first event, having ingested
    # nothing. (A chunk that does not parse would be parsed twice: the fast
    # path gives up, and the reflection parser finds the error.)
    # Engine.ingest overlaps the encoding of a chunk with the C call of the
    # one before, so on two idle cores its rate is about one event per the
    # larger of (encode + decode) and the C call.
    from rapport.engine import _decode, _dumps_events
    shares = {"encode": [], "call": [], "parse": [], "decode": []}
    for _ in range(args.repeat):
        t = dict.fromkeys(shares, 0.0)
        with rapport.Engine(config) as engine:
            for start in range(0, n, args.batch_size):
                chunk = dicts[start:start + args.batch_size]
                begin = time.thread_time()
                data = _dumps_events(chunk)
                t["encode"] += time.thread_time() - begin
                bad = b'{"events":[{"occurred_at_us":1},' + data[len(b'{"events":['):]
                begin = time.thread_time()
                try:
                    _ffi.rapport_ingest_batch_v2(None, None, engine._h(), bad, len(bad),
                                                 _ffi.FORMAT_JSON, _ffi.BATCH_ATOMIC,
                                                 _ffi.FORMAT_JSON)
                    raise AssertionError("the bad event was accepted")
                except rapport.InvalidArgumentError:
                    pass
                t["parse"] += time.thread_time() - begin
                out = _ffi.OutBuffer()
                begin = time.thread_time()
                _ffi.rapport_ingest_batch_v2(*out.args(), engine._h(), data, len(data),
                                             _ffi.FORMAT_JSON, _ffi.BATCH_ATOMIC,
                                             _ffi.FORMAT_JSON)
                t["call"] += time.thread_time() - begin
                raw = out.take()
                begin = time.thread_time()
                _decode(raw)
                t["decode"] += time.thread_time() - begin
        for k in shares:
            shares[k].append(t[k])
    us = {k: 1e6 * min(v) / n for k, v in shares.items()}
    print(f"  dicts, per event (thread CPU, best of {args.repeat}): json.dumps {us['encode']:.2f} "
          f"us + decoding the result {us['decode']:.2f} us (Python); the C call "
          f"{us['call']:.2f} us, of which the JSON parse at most {us['parse']:.2f} us (with "
          f"the engine refusing the chunk's first event; c_api_bench_cpp BM_ParseJsonBatch "
          f"times the parse alone)")
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
