#!/usr/bin/env bash
# Checks the shared library's export surface against the C header:
#  - every defined dynamic symbol is rapport_* (the version node RAPPORT_1
#    itself, an absolute symbol, is the only other entry nm lists);
#  - the exported functions are exactly the ones rapport.h declares, so a
#    declaration without a definition (or a stray export) fails here;
#  - the SONAME is librapport.so.1.
# Usage: check_exports.sh <path to librapport.so> <path to rapport.h>
set -euo pipefail
lib="$1"
header="$2"
fail() { echo "FAIL: $*" >&2; exit 1; }

syms=$(nm -D --defined-only "$lib")
[[ -n "$syms" ]] || fail "nm listed no symbols in $lib"
# Drop version definitions ("A RAPPORT_1"), keep the names without @VERSION.
exported=$(awk '!($2 == "A" && $3 ~ /^RAPPORT_[0-9]+$/) { sub(/@.*/, "", $3); print $3 }' \
           <<<"$syms" | sort -u)
stray=$(grep -v '^rapport_' <<<"$exported" || true)
[[ -z "$stray" ]] || fail "symbols outside rapport_* are exported:"$'\n'"$stray"
unversioned=$(awk '$2 != "A" && $3 !~ /@@RAPPORT_[0-9]+$/ { print $3 }' <<<"$syms")
[[ -z "$unversioned" ]] || fail "symbols without a RAPPORT_n version:"$'\n'"$unversioned"

declared=$(tr '\n' ' ' <"$header" | grep -oE 'RAPPORT_C_API[^;(]*\brapport_[a-z0-9_]+\(' |
           grep -oE 'rapport_[a-z0-9_]+\($' | tr -d '(' | sort -u)
[[ -n "$declared" ]] || fail "found no declarations in $header"
if [[ "$declared" != "$exported" ]]; then
  diff <(echo "$declared") <(echo "$exported") >&2 || true
  fail "exports differ from the declarations of rapport.h (< declared, > exported)"
fi

soname=$(objdump -p "$lib" | awk '$1 == "SONAME" { print $2 }')
[[ "$soname" == "librapport.so.1" ]] || fail "SONAME is '$soname', want librapport.so.1"
echo "OK: $(wc -l <<<"$exported") rapport_* functions exported, SONAME $soname"
