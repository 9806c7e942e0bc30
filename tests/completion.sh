#!/bin/bash
# The bash completions in shell-completion/ loaded the way bash-completion
# loads them, in a real bash: a few completions, and every option that
# `netechod -h`, `netecho -h` and `netecho COMMAND -h` print is offered (so
# a new option cannot be forgotten in the completion). Exit 77 (skip) when
# bash-completion is not installed. Env: NETECHOD_BIN, NETECHO_BIN,
# SOURCE_ROOT (meson sets them).
set -euo pipefail
src=${SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
: "${NETECHOD_BIN:?}" "${NETECHO_BIN:?}"
bc=${BASH_COMPLETION:-/usr/share/bash-completion/bash_completion}
[ -r "$bc" ] || { echo "SKIP: bash-completion not installed ($bc)"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/conf.d"
: >"$tmp/conf.d/alpha.conf"
: >"$tmp/conf.d/beta.conf"

# complete LINE: the words bash would offer for LINE (the cursor at its
# end), one a line, sorted; from a fresh bash that sourced bash-completion
# and our file.
complete_line() {
	bash --norc --noprofile -c '
		bc=$1 file=$2 line=$3
		source "$bc" || exit 1
		source "$file" || exit 1
		read -r -a COMP_WORDS <<<"$line"
		[[ $line == *" " ]] && COMP_WORDS+=("")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMP_LINE=$line COMP_POINT=${#line}
		fn=$(complete -p "${COMP_WORDS[0]}" | sed -n "s/.*-F \([^ ]*\).*/\1/p")
		[ -n "$fn" ] || exit 1
		COMPREPLY=()
		"$fn" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
		printf "%s\n" "${COMPREPLY[@]}"
	' complete-test "$bc" "$src/shell-completion/${1%% *}" "$1" | sort -u
}

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1${2:+: $2}"; }
# expect LINE WORD...: the completions of LINE are exactly WORD...
expect() {
	local line=$1 got want; shift
	got=$(complete_line "$line" | paste -sd' ' -)
	want=$(printf '%s\n' "$@" | sort -u | paste -sd' ' -)
	if [ "$got" = "$want" ]; then ok "'$line' -> $want"
	else fail "'$line'" "got '$got', want '$want'"; fi
}
# offers LINE WORD...: the completions of LINE include every WORD
offers() {
	local line=$1 got w missing=; shift
	got=$(complete_line "$line")
	for w in "$@"; do grep -qxF -- "$w" <<<"$got" || missing+=" $w"; done
	if [ -z "$missing" ]; then ok "'$line' offers $*"
	else fail "'$line' does not offer:$missing" "it offers $(paste -sd' ' - <<<"$got")"; fi
}
# options HELP_TEXT: the long and short options on the help's option
# lines ("  -x, --xyz ...") and its "netecho -h | --help" usage lines
options() {
	grep -E '^[[:space:]]+-|netecho -' <<<"$1" | sed 's/^.*netecho -/ -/' | grep -oE '(^|[[:space:],])--?[A-Za-z][A-Za-z0-9-]*' |
		sed 's/^[[:space:],]*//' | sort -u
}

# ---- a few completions ----
expect "netechod --c" --check --config
expect "netechod --log" --log-level
expect "netechod -l " debug error info notice warning
expect "netechod --log-level w" warning
expect "netechod -c $tmp/conf.d/" "$tmp/conf.d/alpha.conf" "$tmp/conf.d/beta.conf"
expect "netechod --config $tmp/conf.d/b" "$tmp/conf.d/beta.conf"
expect "netechod -t -c $tmp/conf.d/a" "$tmp/conf.d/alpha.conf"
expect "netecho " bench chat echo
expect "netecho b" bench
expect "netecho -" --help --version -V -h
expect "netecho bench --co" --conns --connect
expect "netecho chat -" -u --udp -h --help
expect "netecho echo --" --udp --timeout --proxy --help
expect "netecho echo -t " # a number: nothing to offer
expect "netecho bench -u localhost 7 --p" --pipeline --proxy
expect "netecho echo --proxy " v1 v2
expect "netecho bench localhost 7 --proxy v" v1 v2
expect "netecho bench --chat --i" --irc
expect "netecho bench --chat localhost 7 -S " # a number: nothing to offer

# ---- every option in the help output is completed ----
help=$("$NETECHOD_BIN" -h)
mapfile -t opts < <(options "$help")
[ ${#opts[@]} -ge 10 ] || fail "netechod -h: only ${#opts[@]} options found" "${opts[*]}"
offers "netechod -" "${opts[@]}"

help=$("$NETECHO_BIN" -h)
mapfile -t opts < <(options "$help")
[ ${#opts[@]} -ge 4 ] || fail "netecho -h: only ${#opts[@]} options found" "${opts[*]}"
offers "netecho -" "${opts[@]}"
# The subcommands: "  NAME   text" lines of netecho -h, and its Usage lines.
mapfile -t cmds < <({ grep -oE '^  [a-z]+  ' <<<"$help"; grep -oE 'netecho [a-z]+' <<<"$help" | cut -d' ' -f2; } |
	tr -d ' ' | sort -u)
[ ${#cmds[@]} -ge 3 ] || fail "netecho -h: only ${#cmds[@]} subcommands found" "${cmds[*]}"
offers "netecho " "${cmds[@]}"
for cmd in "${cmds[@]}"; do
	help=$("$NETECHO_BIN" "$cmd" -h)
	mapfile -t opts < <(options "$help")
	[ ${#opts[@]} -ge 2 ] || fail "netecho $cmd -h: only ${#opts[@]} options found" "${opts[*]}"
	offers "netecho $cmd -" "${opts[@]}"
done
help=$("$NETECHO_BIN" bench --chat -h)
mapfile -t opts < <(options "$help")
[ ${#opts[@]} -ge 10 ] || fail "netecho bench --chat -h: only ${#opts[@]} options found" "${opts[*]}"
offers "netecho bench --chat -" "${opts[@]}"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
