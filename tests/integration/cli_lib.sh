#!/usr/bin/env bash
# Shared by the CLI test scripts (source it): `check NAME EXPECTED_EXIT REGEX -- command...` runs
# the command and checks its exit status and that its output matches REGEX; `fail` ends up 1 if
# any check failed (scripts `exit $fail`).
fail=0
check() {  # check NAME EXPECTED_EXIT REGEX -- command...
  local name=$1 want=$2 regex=$3; shift 4
  local out; out=$("$@" 2>&1); local rc=$?
  if [ "$rc" -ne "$want" ]; then echo "FAIL $name: exit $rc, expected $want"; echo "$out" | tail -20; fail=1; return; fi
  if ! grep -Eq -- "$regex" <<<"$out"; then echo "FAIL $name: output lacks /$regex/"; echo "$out" | tail -20; fail=1; return; fi
  echo "ok   $name"
}
