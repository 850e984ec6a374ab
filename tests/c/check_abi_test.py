#!/usr/bin/env python3
"""Tests scripts/check-abi itself, then runs it on the freshly built library.

From the committed baseline it derives three baselines, each standing for an
older library: one without rapport_clock_us (so the current library ADDED a
function: compatible, must pass), one with an extra function (so the current
library REMOVED one: must fail), and one where rapport_clock_us returned int
(so its signature CHANGED: must fail). Then the real check must pass.

Usage: check_abi_test.py <scripts/check-abi> <librapport.so> <abi/librapport.abi>
"""
import os
import re
import subprocess
import sys
import tempfile

check, lib, baseline = sys.argv[1:4]
text = open(baseline).read()


def run(abi_text):
    with tempfile.NamedTemporaryFile("w", suffix=".abi", delete=False) as f:
        f.write(abi_text)
    try:
        env = dict(os.environ, RAPPORT_ABI_BASELINE=f.name)
        p = subprocess.run([check, lib], env=env, capture_output=True, text=True)
        return p.returncode, p.stdout + p.stderr
    finally:
        os.unlink(f.name)


def expect(name, abi_text, want_rc, want_text):
    rc, out = run(abi_text)
    if rc != want_rc or want_text not in out:
        sys.exit(f"FAIL {name}: exit {rc} (want {want_rc}), output lacks {want_text!r}:\n{out}")
    print(f"ok   {name}")


decl = re.search(r"    <function-decl name='rapport_clock_us'.*?</function-decl>\n", text, re.S)
sym = re.search(r"    <elf-symbol name='rapport_clock_us'[^\n]*\n", text)
assert decl and sym, "rapport_clock_us is not in the baseline"

added = text.replace(sym.group(0), "").replace(decl.group(0), "")
expect("added function passes", added, 0, "compatible")

gone_sym = sym.group(0).replace("rapport_clock_us", "rapport_gone")
gone_decl = ("    <function-decl name='rapport_gone' mangled-name='rapport_gone' "
             "visibility='default' binding='global' size-in-bits='64' "
             "elf-symbol-id='rapport_gone@@RAPPORT_1'>\n    </function-decl>\n")
removed = text.replace(sym.group(0), sym.group(0) + gone_sym).replace(
    decl.group(0), decl.group(0) + gone_decl)
expect("removed function fails", removed, 1, "incompatible")

int_id = re.search(r"<type-decl name='int' size-in-bits='32' id='([^']+)'", text).group(1)
changed_decl = re.sub(r"<return type-id='[^']+'/>", f"<return type-id='{int_id}'/>",
                      decl.group(0))
assert changed_decl != decl.group(0)
expect("changed signature fails", text.replace(decl.group(0), changed_decl), 1,
       "never changes")

rc, out = run(text)
print(out)
sys.exit(rc)
