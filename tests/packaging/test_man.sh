#!/usr/bin/env bash
# The man pages: groff renders them without a warning, lb.json(5) documents every key the
# config loader accepts (the key tables of lb/config.c), lbctl(8) every command of lbctl's
# table (lbctl --help), and lb.json(5)'s example passes lb --check.
# Usage: test_man.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$(cd "${1:?usage: test_man.sh SOURCE_DIR BUILD_DIR}" && pwd)
build=$(cd "${2:?usage: test_man.sh SOURCE_DIR BUILD_DIR}" && pwd)
fail() { echo "test_man: $*" >&2; exit 1; }

for page in lb.8 lbctl.8 lb.json.5; do
	warn=$(groff -mandoc -ww -z "$src/man/$page" 2>&1) || fail "$page: groff failed: $warn"
	[ -z "$warn" ] || fail "$page: groff warns: $warn"
done

# Every string of every `..._keys[] = {...};` table in lb/config.c.
keys=$(awk '/_keys\[\] = \{/,/\};/' "$src/lb/config.c" | grep -o '"[a-z_]*"' | tr -d '"' | sort -u)
[ "$(echo "$keys" | wc -l)" -ge 40 ] || fail "found only $(echo "$keys" | wc -l) config keys in lb/config.c"
for k in $keys; do
	grep -Eq "^\.It Cm $k( |$)|Cm $k( |,|$)" "$src/man/lb.json.5" || fail "lb.json(5) does not document the key \"$k\""
done

# The commands lbctl --help lists (its command table).
cmds=$("$build/lbctl" --help | awk '/^commands:/{on=1; next} /^$/{on=0} on && /^  [a-z]/{print $1}')
[ "$(echo "$cmds" | wc -l)" -ge 15 ] || fail "lbctl --help lists only $(echo "$cmds" | wc -l) commands"
for c in $cmds; do
	grep -Eq "^\.It Cm $c( |$)" "$src/man/lbctl.8" || fail "lbctl(8) does not document the command \"$c\""
done

example=$(mktemp /tmp/lb-man-example.XXXXXX.json)
trap 'rm -f "$example"' EXIT
sed -n '/^\.Bd -literal/,/^\.Ed/p' "$src/man/lb.json.5" | sed '1d;$d' >"$example"
"$build/lb" -c "$example" --check >/dev/null || fail "lb.json(5)'s example does not pass lb --check"
echo "test_man: 3 pages render cleanly; $(echo "$keys" | wc -l) keys and $(echo "$cmds" | wc -l) commands documented"
