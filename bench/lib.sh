# bench/lib.sh — measurement helpers shared by bench/run and bench/forward. Source it
# after setting OUT (results), CORE_CLIENT, DUR, LDUR, RATE, BDUR, O (the build) and
# QUERIES (the query file).

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

cpu_since() { # cpu_since PID "UTIME STIME": the ticks the tree used since cpu_ticks printed those
	local u0 s0 u1 s1
	read -r u0 s0 <<<"$2"
	read -r u1 s1 < <(cpu_ticks "$1")
	echo "$((u1 - u0)) $((s1 - s0))"
}

rss_kb() {
	local pid=$1 t=0 c
	for c in $(tree "$pid"); do
		t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$c/status")))
	done
	echo $t
}

HZ=$(getconf CLK_TCK)

# The saturation run caps the server at CAP % of one core (a cgroup's CPU quota, 10 ms
# period) so that the server, not dnsperf, is what saturates: uncapped, one dnsperf on one
# core is the ceiling of every server here, and its q/s would measure dnsperf. CAP=0, or no
# cgroup CPU controller we can write (not root), skips that run and says so.
CAP=${CAP:-50}
CAPCG=""
cap_setup() {
	[ "$CAP" -gt 0 ] || { echo "bench: CAP=0: no capped saturation run"; return 0; }
	if [ "$(id -u)" != 0 ]; then
		echo "bench: SKIPPED the capped saturation run: needs root (a cgroup CPU quota)"
		return 0
	fi
	if grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then # cgroup v2
		echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
		CAPCG=/sys/fs/cgroup/internald-bench
		mkdir -p "$CAPCG"
		echo "$((CAP * 100)) 10000" >"$CAPCG/cpu.max"
		CAPROOT=/sys/fs/cgroup CAPFILE=cgroup.procs
	elif [ -w /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then # cgroup v1
		CAPCG=/sys/fs/cgroup/cpu/internald-bench
		mkdir -p "$CAPCG"
		echo 10000 >"$CAPCG/cpu.cfs_period_us"
		echo $((CAP * 100)) >"$CAPCG/cpu.cfs_quota_us"
		CAPROOT=/sys/fs/cgroup/cpu CAPFILE=tasks
	else
		echo "bench: SKIPPED the capped saturation run: no cgroup CPU controller"
	fi
}

cap_move() { # cap_move PID DIR: a process tree into cgroup DIR (v1 moves each thread)
	local p t
	for p in $(tree "$1"); do
		if [ "$CAPFILE" = cgroup.procs ]; then
			echo "$p" >"$2/cgroup.procs"
		else
			for t in /proc/"$p"/task/*; do echo "${t##*/}" >"$2/tasks"; done
		fi
	done
}

cap_teardown() {
	[ -n "$CAPCG" ] && rmdir "$CAPCG" 2>/dev/null || true
}

dnsperf_cpu() { # dnsperf_cpu PID PORT LOG: saturate for DUR s; prints "q/s cpu_us user_us sys_us lost"
	local pid=$1 port=$2 log=$3 t0 du ds
	t0=$(cpu_ticks "$pid")
	taskset -c $CORE_CLIENT dnsperf -s 127.0.0.1 -p "$port" -d "$QUERIES" -l "$DUR" \
		-c 8 -q 200 -t 1 -T 1 >"$log" 2>&1
	read -r du ds < <(cpu_since "$pid" "$t0")
	awk -v du="$du" -v ds="$ds" -v hz="$HZ" '
		/Queries completed/ {q = $3} /Queries lost/ {lost = $3} /Queries per second/ {qps = $4}
		END {if (q == 0) { print "0 0 0 0 0"; exit } # dnsperf got no answer: its log says why
			u = du * 1e6 / hz / q; s = ds * 1e6 / hz / q
			printf "%d %.3f %.3f %.3f %d\n", qps, u + s, u, s, lost}' "$log"
}

measure() { # measure NAME PID PORT ROUND
	local name=$1 pid=$2 port=$3 round=$4
	local qps cpu_us user_us sys_us lost cq=0 cc=0 cu=0 cs=0 cl=0
	if [ -n "$CAPCG" ]; then
		cap_move "$pid" "$CAPCG"
		read -r cq cc cu cs cl < <(dnsperf_cpu "$pid" "$port" "$OUT/dnsperf-$name-$round-capped.log")
		cap_move "$pid" "$CAPROOT"
	fi
	read -r qps cpu_us user_us sys_us lost < <(dnsperf_cpu "$pid" "$port" "$OUT/dnsperf-$name-$round.log")
	# latency at a fixed offered load
	taskset -c $CORE_CLIENT dnsperf -s 127.0.0.1 -p "$port" -d "$QUERIES" -l "$LDUR" \
		-Q "$RATE" -c 8 -q 200 -t 1 -T 1 -v 2>/dev/null | awk '/^> / {print $NF}' | sort -n >"$OUT/lat-$name-$round.txt"
	local n p50 p99
	n=$(wc -l <"$OUT/lat-$name-$round.txt")
	p50=$(awk -v n="$n" 'NR == int(n * 0.50) + 1 {printf "%.1f", $1 * 1e6}' "$OUT/lat-$name-$round.txt")
	p99=$(awk -v n="$n" 'NR == int(n * 0.99) + 1 {printf "%.1f", $1 * 1e6}' "$OUT/lat-$name-$round.txt")
	echo "$name,$round,$qps,$cpu_us,$p50,$p99,$(rss_kb "$pid"),$lost,$user_us,$sys_us,$cq,$cc,$cu,$cs,$cl" >>"$OUT/results.csv"
	[ -n "$CAPCG" ] && printf '  %-10s round %d: capped at %d%%: %8d q/s  %7.3f µs CPU/query (user %s, kernel %s)  lost %s\n' \
		"$name" "$round" "$CAP" "$cq" "$cc" "$cu" "$cs" "$cl"
	printf '  %-10s round %d: uncapped:   %8d q/s  %7.3f µs CPU/query (user %s, kernel %s)  p50 %6s µs  p99 %7s µs  lost %s\n' \
		"$name" "$round" "$qps" "$cpu_us" "$user_us" "$sys_us" "$p50" "$p99" "$lost"
}

# awk: the median of a space-separated list of numbers (both summaries use it)
AWK_MED='
	function med(list,   a, n, i, j, x) {
		n = split(list, a, " ")
		for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}'

RESULTS_HEADER="server,round,qps,cpu_us_per_query,p50_us,p99_us,rss_kb,lost,user_us,sys_us,cap_qps,cap_cpu_us,cap_user_us,cap_sys_us,cap_lost"

summary() { # summary FIRST SECOND THIRD: the median of the rounds, and FIRST's ratios;
	# also $OUT/plot.dat (server, q/s capped and uncapped, CPU/query capped and uncapped)
	# The median, not the mean: on a shared machine one round in a few runs slow for every
	# server alike, and the median of three ignores it.
	echo "== summary (median of the rounds; ratios $1 / other)"
	awk -F, -v names="$*" -v cap="${CAPCG:+$CAP}" -v plot="$OUT/plot.dat" '
	'"$AWK_MED"'
	NR > 1 { for (f = 3; f <= 14; f++) { v[$1, f] = v[$1, f] " " $f; r[$1, $2, f] = $f }
		if (!($2 in seen)) { seen[$2] = 1; rounds[++nr] = $2 } }
	function spread(a, s, f,   i, x, lo, hi, l) { # the ratios a/s of field f, round by round
		l = ""; lo = hi = ""
		for (i = 1; i <= nr; i++) { if (!((a, rounds[i], f) in r) || !((s, rounds[i], f) in r) || r[s, rounds[i], f] == 0) continue
			x = r[a, rounds[i], f] / r[s, rounds[i], f]; l = l " " x
			if (lo == "" || x < lo) lo = x; if (hi == "" || x > hi) hi = x }
		return l == "" ? "-" : sprintf("%.2f-%.2fx (median %.2fx)", lo, hi, med(l))
	}
	END {
		split(names, order, " ")
		for (i = 1; i <= 3; i++) { s = order[i]; for (f = 3; f <= 14; f++) m[s, f] = med(v[s, f])
			printf "%s %d %d %.3f %.3f\n", s, m[s, 11], m[s, 3], m[s, 12], m[s, 4] >plot }
		if (cap != "") {
			printf "  saturation, each server capped at %d%% of one core (the server is the bottleneck):\n", cap
			printf "  %-10s %10s %14s %9s %9s\n", "server", "q/s", "CPU µs/query", "user", "kernel"
			for (i = 1; i <= 3; i++) { s = order[i]
				printf "  %-10s %10d %14.3f %9.3f %9.3f\n", s, m[s, 11], m[s, 12], m[s, 13], m[s, 14] }
		}
		printf "  uncapped (one dnsperf on one core is the bottleneck); latency at the fixed load:\n"
		printf "  %-10s %10s %14s %9s %9s %9s %9s %9s\n", "server", "q/s", "CPU µs/query", "user", "kernel", "p50 µs", "p99 µs", "RSS MiB"
		for (i = 1; i <= 3; i++) { s = order[i]
			printf "  %-10s %10d %14.3f %9.3f %9.3f %9.1f %9.1f %9.1f\n", s, m[s, 3], m[s, 4], m[s, 9], m[s, 10], m[s, 5], m[s, 6], m[s, 7] / 1024 }
		a = order[1]
		for (i = 2; i <= 3; i++) { s = order[i]
			if (cap != "")
				printf "  %s/%s at saturation: throughput %.2fx, CPU per query %.2fx (user %.2fx)\n", a, s, m[a, 11] / m[s, 11], m[a, 12] / m[s, 12], m[a, 13] / m[s, 13]
			printf "  %s/%s uncapped:      throughput %.2fx, CPU per query %.2fx (user %.2fx)\n", a, s, m[a, 3] / m[s, 3], m[a, 4] / m[s, 4], m[a, 9] / m[s, 9]
			if (nr > 1)
				printf "  %s/%s ratios per round: CPU per query %s %s; p50 %s\n", a, s, cap != "" ? "at saturation" : "uncapped", spread(a, s, cap != "" ? 12 : 4), spread(a, s, 5) }
	}' "$OUT/results.csv"
}

BURST_HEADER="server,round,n,sent,answered,cpu_us_per_query,user_us,sys_us"
burst() { # burst NAME PID PORT N ROUND: bursts of N queries for BDUR s; a line of burst.csv
	local name=$1 pid=$2 port=$3 n=$4 round=$5 t0 du ds sent answered
	t0=$(cpu_ticks "$pid")
	read -r sent answered < <(taskset -c $CORE_CLIENT "$O/burst" 127.0.0.1 "$port" "$n" "$BDUR" "$QUERIES")
	read -r du ds < <(cpu_since "$pid" "$t0")
	awk -v name="$name" -v round="$round" -v n="$n" -v sent="$sent" -v a="$answered" \
		-v du="$du" -v ds="$ds" -v hz="$HZ" 'BEGIN {
		u = a ? du * 1e6 / hz / a : 0; s = a ? ds * 1e6 / hz / a : 0
		printf "%s,%d,%d,%d,%d,%.3f,%.3f,%.3f\n", name, round, n, sent, a, u + s, u, s }' >>"$OUT/burst.csv"
}

burst_summary() { # burst_summary FIRST SECOND THIRD: the burst table (median of the rounds),
	# a fit of CPU = per packet + per wake-up / N for each server, and FIRST's ratios per N
	awk -F, -v names="$*" '
	'"$AWK_MED"'
	NR > 1 { c[$1, $3] = c[$1, $3] " " $6; u[$1, $3] = u[$1, $3] " " $7; k[$1, $3] = k[$1, $3] " " $8
		lost[$1, $3] += $4 - $5
		if (!($3 in seen)) { seen[$3] = 1; ns[++nn] = $3 } }
	END {
		split(names, s, " ")
		for (key in c) { c[key] = med(c[key]); u[key] = med(u[key]); k[key] = med(k[key]) }
		printf "  %-10s %6s %14s %9s %9s %7s\n", "server", "N", "CPU µs/query", "user", "kernel", "lost"
		for (i = 1; i <= 3; i++) for (j = 1; j <= nn; j++) { n = ns[j]
			printf "  %-10s %6d %14.3f %9.3f %9.3f %7d\n", s[i], n, c[s[i], n], u[s[i], n], k[s[i], n], lost[s[i], n] }
		for (i = 1; i <= 3; i++) { # least squares of CPU on 1/N
			sx = sy = sxx = sxy = 0
			for (j = 1; j <= nn; j++) { x = 1 / ns[j]; y = c[s[i], ns[j]]; sx += x; sy += y; sxx += x * x; sxy += x * y }
			d = nn * sxx - sx * sx
			if (d == 0) continue
			b = (nn * sxy - sx * sy) / d; a = (sy - b * sx) / nn
			printf "  %-10s fit: %.2f µs per packet + %.2f µs per wake-up\n", s[i], a, b }
		for (i = 2; i <= 3; i++) { line = ""
			for (j = 1; j <= nn; j++) { n = ns[j]
				line = line sprintf(" N=%d %.2fx", n, c[s[i], n] ? c[s[1], n] / c[s[i], n] : 0) }
			printf "  %s/%s CPU per query:%s\n", s[1], s[i], line }
	}' "$OUT/burst.csv"
}
