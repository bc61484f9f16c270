# bench/lib.sh — measurement helpers shared by bench/run and bench/forward. Source it
# after setting OUT (results), CORE_CLIENT, DUR, LDUR, RATE and QUERIES (the query file).

port() { # a free loopback port
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		ss -Hlnu "sport = :$p" | grep -q . || { echo "$p"; return; }
	done
}

tree() { # a process and all its descendants (NSD's server is a grandchild)
	local c
	echo "$1"
	for c in $(pgrep -P "$1" || true); do tree "$c"; done
}

cpu_ticks() { # "utime stime" of a process tree (threads included)
	local pid=$1 u=0 s=0 c
	for c in $(tree "$pid"); do
		# fields after the ")" of the command name, which may hold spaces ("nsd: main")
		read -r cu cs < <(sed 's/.*) //' "/proc/$c/stat" | awk '{print $12, $13}')
		u=$((u + cu)) s=$((s + cs))
	done
	echo "$u $s"
}

rss_kb() {
	local pid=$1 t=0 c
	for c in $(tree "$pid"); do
		t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$c/status")))
	done
	echo $t
}

HZ=$(getconf CLK_TCK)

measure() { # measure NAME PID PORT ROUND
	local name=$1 pid=$2 port=$3 round=$4 t0 t1 log
	log="$OUT/dnsperf-$name-$round.log"
	t0=$(cpu_ticks "$pid")
	taskset -c $CORE_CLIENT dnsperf -s 127.0.0.1 -p "$port" -d "$QUERIES" -l "$DUR" \
		-c 8 -q 200 -t 1 -T 1 >"$log" 2>&1
	t1=$(cpu_ticks "$pid")
	local done_q qps lost
	done_q=$(awk '/Queries completed/ {print $3}' "$log")
	lost=$(awk '/Queries lost/ {print $3}' "$log")
	qps=$(awk '/Queries per second/ {printf "%d", $4}' "$log")
	local cpu_us user_us sys_us
	read -r u0 s0 <<<"$t0"
	read -r u1 s1 <<<"$t1"
	user_us=$(awk -v d=$((u1 - u0)) -v hz="$HZ" -v q="$done_q" 'BEGIN {printf "%.3f", d * 1e6 / hz / q}')
	sys_us=$(awk -v d=$((s1 - s0)) -v hz="$HZ" -v q="$done_q" 'BEGIN {printf "%.3f", d * 1e6 / hz / q}')
	cpu_us=$(awk -v a="$user_us" -v b="$sys_us" 'BEGIN {printf "%.3f", a + b}')
	# latency at a fixed offered load
	taskset -c $CORE_CLIENT dnsperf -s 127.0.0.1 -p "$port" -d "$QUERIES" -l "$LDUR" \
		-Q "$RATE" -c 8 -q 200 -t 1 -T 1 -v 2>/dev/null | awk '/^> / {print $NF}' | sort -n >"$OUT/lat-$name-$round.txt"
	local n p50 p99
	n=$(wc -l <"$OUT/lat-$name-$round.txt")
	p50=$(awk -v n="$n" 'NR == int(n * 0.50) + 1 {printf "%.1f", $1 * 1e6}' "$OUT/lat-$name-$round.txt")
	p99=$(awk -v n="$n" 'NR == int(n * 0.99) + 1 {printf "%.1f", $1 * 1e6}' "$OUT/lat-$name-$round.txt")
	echo "$name,$round,$qps,$cpu_us,$p50,$p99,$(rss_kb "$pid"),$lost,$user_us,$sys_us" >>"$OUT/results.csv"
	printf '  %-10s round %d: %8d q/s  %7.3f µs CPU/query (user %s, kernel %s)  p50 %6s µs  p99 %7s µs  lost %s\n' \
		"$name" "$round" "$qps" "$cpu_us" "$user_us" "$sys_us" "$p50" "$p99" "$lost"
}


summary() { # summary FIRST SECOND THIRD: the mean of every round, and FIRST's ratios
	echo "== summary (mean of the rounds; ratios $1 / other)"
	awk -F, -v names="$*" 'NR > 1 {q[$1] += $3; c[$1] += $4; p50[$1] += $5; p99[$1] += $6; r[$1] = $7; u[$1] += $9; k[$1] += $10; n[$1]++}
	END {
		for (s in n) { q[s] /= n[s]; c[s] /= n[s]; p50[s] /= n[s]; p99[s] /= n[s]; u[s] /= n[s]; k[s] /= n[s] }
		printf "  %-10s %10s %14s %9s %9s %9s %9s %9s\n", "server", "q/s", "CPU µs/query", "user", "kernel", "p50 µs", "p99 µs", "RSS MiB"
		split(names, order, " ")
		for (i = 1; i <= 3; i++) { s = order[i]
			printf "  %-10s %10d %14.3f %9.3f %9.3f %9.1f %9.1f %9.1f\n", s, q[s], c[s], u[s], k[s], p50[s], p99[s], r[s] / 1024 }
		for (i = 2; i <= 3; i++) { s = order[i]
			printf "  %s/%s: throughput %.2fx, CPU per query %.2fx (user %.2fx)\n", order[1], s, q[order[1]] / q[s], c[order[1]] / c[s], u[order[1]] / u[s] }
	}' "$OUT/results.csv"
}
