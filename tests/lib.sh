# tests/lib.sh — shared by the integration and netns suites: assertions that count,
# and a real internald started on a free port. Source it; set O (build dir) first.
set -u
O=${O:-build}
# TOOL_O: the build of the test clients (dnsq, dnsdiff, kvtool, nkeytool) and of the
# commands that only poll a follower's progress: the plain one, in the sanitizer pass too
# (they are the test's eyes, not the product under test, and a sanitized process takes
# 80 ms to start against 20: polled every 50 ms, it took most of a core from the suites
# beside it)
TOOL_O=${TOOL_O:-$O}
PASS=0
FAIL=0
SKIP=0
CLEANUP=()

ok() { PASS=$((PASS + 1)); echo "  ok   $*"; }
bad() { FAIL=$((FAIL + 1)); echo "  FAIL $*"; }
skip() { SKIP=$((SKIP + 1)); echo "  SKIP $*"; }

# expect NAME WANT CMD...: the command's output (stdout, trimmed) must equal WANT
expect() {
	local name=$1 want=$2 got
	shift 2
	got=$("$@" 2>&1 | sed -e 's/[[:space:]]*$//')
	if [ "$got" = "$want" ]; then ok "$name"; else bad "$name"; printf '       want: %s\n       got:  %s\n' "$want" "$got"; fi
}

# contains NAME NEEDLE CMD...: the output must contain NEEDLE
contains() {
	local name=$1 needle=$2 got
	shift 2
	got=$("$@" 2>&1)
	if grep -qF -- "$needle" <<<"$got"; then ok "$name"; else bad "$name"; printf '       want to contain: %s\n       got: %s\n' "$needle" "$(head -c 600 <<<"$got")"; fi
}

# lacks NAME NEEDLE CMD...: the output must not contain NEEDLE
lacks() {
	local name=$1 needle=$2 got
	shift 2
	got=$("$@" 2>&1)
	if grep -qF -- "$needle" <<<"$got"; then bad "$name"; printf '       must not contain: %s\n' "$needle"; else ok "$name"; fi
}

# sorted CMD...: its output lines sorted (answers are shuffled)
sorted() { "$@" | sort; }

# start_server LOG ARGS...: starts internald, waits for its event=serving line, sets SPID
# and PORT (the first listen address's port)
start_server() {
	local log=$1
	shift
	SLOG=$log
	"$O/internald" "$@" 2>"$log" &
	SPID=$!
	CLEANUP+=("kill $SPID 2>/dev/null")
	for _ in $(seq 100); do
		grep -q "event=serving" "$log" 2>/dev/null && break
		kill -0 "$SPID" 2>/dev/null || break
		sleep 0.05
	done
	if ! grep -q "event=serving" "$log"; then
		echo "internald did not start:"; cat "$log"; return 1
	fi
	PORT=$(grep -m1 -o 'event=bind addr=[^ ]*' "$log" | sed 's/.*:\([0-9]*\)$/\1/')
}

# stop_server: SIGTERM, the exit status, and no sanitizer report in the server's log
stop_server() {
	local rc
	kill -TERM "$SPID" 2>/dev/null
	wait "$SPID"
	rc=$?
	if grep -qE "Sanitizer|runtime error" "$SLOG"; then
		bad "sanitizer report in $SLOG"; sed -n '1,30p' "$SLOG"
	fi
	return $rc
}

cleanup() {
	local c
	for c in "${CLEANUP[@]}"; do eval "$c" || true; done
}
trap cleanup EXIT

# summary SUITE: the closing line CI reads; exit non-zero on any failure
summary() {
	echo "$1: $PASS passed, $FAIL failed, $SKIP skipped"
	[ "$FAIL" -eq 0 ]
}

# free_port: a loopback port no UDP or TCP socket holds now, below the kernel's range of
# ephemeral ports (ip_local_port_range), so that no client socket and no daemon bound to
# port 0, of this suite or of one running beside it, takes it before its daemon binds it
free_port() {
	local p lo=32768
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
	[ "$lo" -gt 12000 ] || lo=60000
	for _ in $(seq 50); do
		p=$((10000 + (RANDOM * 32768 + RANDOM) % (lo - 10000)))
		if ! ss -Hlnu "sport = :$p" | grep -q . && ! ss -Hlnt "sport = :$p" | grep -q .; then
			echo "$p"; return 0
		fi
	done
	return 1
}

# start_knot CONF_FN LOG NAME: knotd with the configuration `CONF_FN PORT` prints, on a
# free port, until it answers NAME's SOA on [::1]; on a new port (three tries) when knotd
# cannot bind the one free_port saw free a moment before (it then exits at once). Sets
# KPORT and KNOT; 1, with knotd's log, if it never answers.
start_knot() {
	local fn=$1 log=$2 name=$3 conf
	for _ in 1 2 3; do
		KPORT=$(free_port)
		conf=$(dirname "$log")/knot-$KPORT.conf
		"$fn" "$KPORT" >"$conf"
		knotd -c "$conf" 2>>"$log" &
		KNOT=$!
		CLEANUP+=("kill -CONT $KNOT 2>/dev/null; kill $KNOT 2>/dev/null")
		for _ in $(seq 50); do
			dig @::1 -p "$KPORT" +short +time=1 +tries=1 SOA "$name" 2>/dev/null | grep -q "^[^;]" && return 0
			kill -0 "$KNOT" 2>/dev/null || break
			sleep 0.1
		done
		kill "$KNOT" 2>/dev/null
		wait "$KNOT" 2>/dev/null
	done
	echo "knotd does not answer for $name:"
	cat "$log"
	return 1
}

# now_ms: the wall clock in milliseconds
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# sleep_until MS: sleeps until now_ms reaches MS (returns at once when it has): a wait
# measured from the event it waits on, not from wherever the script happens to be
sleep_until() {
	local d=$(($1 - $(now_ms)))
	[ "$d" -gt 0 ] && sleep "$(awk -v d="$d" 'BEGIN { printf "%.3f", d / 1000 }')"
	return 0
}

# wait_for TRIES CMD...: runs CMD every 50 ms until it succeeds, at most TRIES times (a
# condition polled with a bound instead of a fixed sleep); 1 when it never did
wait_for() {
	local n=$1
	shift
	for _ in $(seq "$n"); do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}

# listening PROTO PORT: a socket (udp or tcp) is bound to PORT
listening() {
	if [ "$1" = udp ]; then ss -Hlnu "sport = :$2" | grep -q .; else ss -Hlnt "sport = :$2" | grep -q .; fi
}

# qtime CMD...: the query time dig's CMD printed (";; Query time: N msec"): the round trip
# alone, not dig's own start, which takes hundreds of milliseconds on a busy machine
qtime() { "$@" | sed -n 's/;; Query time: \([0-9]*\) msec/\1/p'; }

# ms CMD...: runs CMD, prints how long it took in milliseconds
ms() {
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null 2>&1
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}
