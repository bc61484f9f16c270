# tests/integration/natslib.sh — sourced by the NATS suites (sync, auth, cluster, fleet),
# after tests/lib.sh, with CTL, KVT and WORK set: nats-servers on free loopback ports with
# their stores in $WORK, followers into $WORK/NAME.db, and the comparison of a follower's
# whole export with the bucket's whole content.
# start_nats NAME PORT [ARGS...]: a JetStream server, store in $WORK/NAME; waits for it
start_nats() {
	local name=$1 port=$2
	shift 2
	nats-server -a 127.0.0.1 -p "$port" -js -sd "$WORK/$name" -n "$name" "$@" \
		>>"$WORK/$name.log" 2>&1 &
	eval "NATS_$name=$!"
	CLEANUP+=("kill -9 $! 2>/dev/null")
	nats_ready "$WORK/$name.log"
}
# nats_ready LOG: waits (60 s at most: a loaded 2-core CI machine can take tens of
# seconds) until the nats-server logging to LOG is ready; 1, with its log's end, if never
nats_ready() {
	local i
	for i in $(seq 1200); do
		grep -q "Server is ready" "$1" && return 0
		sleep 0.05
	done
	echo "nats-server did not start:"; tail -5 "$1"; return 1
}
stop_nats() { local p="NATS_$1"; kill "${!p}" 2>/dev/null; wait "${!p}" 2>/dev/null; }

# start_follower NAME URL... : internalctl follow into $WORK/NAME.db; sets FPID_NAME
start_follower() {
	local name=$1 args=()
	shift
	for u in "$@"; do args+=(--nats "$u"); done
	# shellcheck disable=SC2086 # FOLLOW_ARGS: more options, split on spaces
	$CTL --db "$WORK/$name.db" follow "${args[@]}" ${BATCH:+--batch $BATCH} ${FOLLOW_ARGS:-} \
		>>"$WORK/$name.log" 2>&1 &
	eval "FPID_$name=$!"
	CLEANUP+=("kill -9 $! 2>/dev/null")
}
fpid() { local p="FPID_$1"; echo "${!p}"; }

# applied_seq DB: the stream sequence the registry has applied (0 if none), as the plain
# build's internalctl stats reads it (lib.sh, TOOL_O)
applied_seq() { $TOOL_O/internalctl --db "$1" stats 2>/dev/null | awk '/^last applied/ {print $4}' | grep . || echo 0; }

# caught_up NAME URL [SECONDS]: waits until follower NAME has applied the bucket's last
# sequence, 60 s at most (a bound for a stuck follower, not a speed: it returns as soon as
# the follower is there, and a loaded 2-core CI machine has taken tens of seconds)
caught_up() {
	local want i
	want=$($KVT "$2" internal seq 2>/dev/null) || return 1
	for i in $(seq $((${3:-60} * 20))); do
		[ "$(applied_seq "$WORK/$1.db")" = "$want" ] && return 0
		sleep 0.05
	done
	echo "       $1 applied $(applied_seq "$WORK/$1.db"), the bucket is at $want"; return 1
}

# bucket_export URL: the bucket's content as internalctl export prints it
bucket_export() {
	local i
	for i in 1 2 3 4 5; do # a cluster that just lost a node may time out at first
		$KVT "$1" internal dump >"$WORK/dump" && break
		sleep 1
	done
	rm -rf "$WORK/ref.db"
	cut -d' ' -f2- "$WORK/dump" | $CTL --db "$WORK/ref.db" --no-sync import - 2>/dev/null &&
		$CTL --db "$WORK/ref.db" export | sort
}
# same_as_bucket TEST NAME URL: follower NAME's registry equals the bucket
same_as_bucket() {
	$CTL --db "$WORK/$2.db" export | sort >"$WORK/got"
	bucket_export "$3" >"$WORK/want"
	if [ -s "$WORK/want" ] && cmp -s "$WORK/got" "$WORK/want"; then ok "$1 ($(wc -l <"$WORK/got") records)"
	else bad "$1"; diff "$WORK/want" "$WORK/got" | head -5; fi
}
