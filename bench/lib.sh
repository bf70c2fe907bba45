# lib.sh - helpers shared by the bench/run-*.sh scripts (sourced, not run).

# bench_priority NAME "$0" "$@": with PRIO=autogroup (the default), re-runs the script in a new
# session whose scheduler autogroup gets nice -20, so other jobs on a shared machine do not
# preempt the pinned servers; PRIO=none leaves scheduling alone.
bench_priority() {
	local name=$1
	shift
	PRIO=${PRIO:-autogroup}
	if [ "$PRIO" = autogroup ] && [ -z "${WSB_IN_SESSION:-}" ]; then
		WSB_IN_SESSION=1 exec setsid --wait "$@"
	fi
	if [ "$PRIO" = autogroup ]; then
		echo -20 >/proc/self/autogroup 2>/dev/null ||
			echo "$name: cannot renice the autogroup (not root?)" >&2
	fi
}

# free_port: prints a loopback TCP port that nothing listens on right now.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT: waits up to 10 s until something accepts on 127.0.0.1:PORT.
wait_port() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "$(basename "$0"): nothing listens on port $1" >&2
	return 1
}

# wait_line FILE PATTERN SECONDS [PID]: waits until a line of FILE matches PATTERN (grep), at
# most SECONDS, and no longer than PID (a process writing FILE) lives. 1 when it never came.
wait_line() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		[ -z "${4:-}" ] || kill -0 "$4" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# wait_ready PORT: waits up to 10 s until wsgate on 127.0.0.1:PORT answers /readyz with 200 (with
# [redis]: its links are up).
wait_ready() {
	for _ in $(seq 100); do
		if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 200 ]; then
			return 0
		fi
		sleep 0.1
	done
	echo "$(basename "$0"): wsgate on port $1 not ready" >&2
	return 1
}

# wsgate_config BINARY FILE PORT [WORKERS]: writes the benchmark config (echo route, no
# heartbeats, quiet log, WORKERS event loops, 1 by default since the server gets one core) and
# checks it with `wsgate -t`. Builds that predate the `workers` key get the file without it
# (only when WORKERS is 1).
wsgate_config() {
	local bin=$1 file=$2 port=$3 workers="workers = ${4:-1}"
	for attempt in 1 2; do
		cat >"$file" <<-EOF2
			[gateway]
			listen = 127.0.0.1:$port
			log_level = warn
			$workers
			[heartbeat]
			ping_interval = 0
			[route /echo]
			type = echo
		EOF2
		if "$bin" -t -c "$file" >/dev/null 2>&1; then return 0; fi
		[ "${4:-1}" = 1 ] || break
		workers=""
	done
	echo "$(basename "$0"): wsgate rejects the benchmark config:" >&2
	"$bin" -t -c "$file" >&2 || true
	return 1
}

# pubsub_config FILE PORT WORKERS [REDISPORT [ADMINPORT]]: the pub/sub benchmark config:
# subscribers on /bench (channel bench), the WebSocket publisher on /bench-pub (publishes to
# bench, subscribes to bench-sink so it receives nothing). With REDISPORT the channels go
# through that redis-server ([redis]); without (or empty), through the in-process hub.
# ADMINPORT adds admin_listen (/metrics).
pubsub_config() {
	local file=$1 port=$2 workers=$3 rport=${4:-} aport=${5:-}
	{
		printf '[gateway]\nlisten = 127.0.0.1:%s\nlog_level = warn\nworkers = %s\n' "$port" "$workers"
		[ -z "$aport" ] || printf 'admin_listen = 127.0.0.1:%s\n' "$aport"
		printf '[heartbeat]\nping_interval = 0\n'
		[ -z "$rport" ] || printf '[redis]\nurl = redis://127.0.0.1:%s/0\n' "$rport"
		cat <<-EOF2
			[route /bench]
			type = pubsub
			subscribe = bench
			[route /bench-pub]
			type = pubsub
			subscribe = bench-sink
			publish = bench
		EOF2
	} >"$file"
}

# redis_start [PREFIX...]: starts a throw-away redis-server (no persistence, files in $WORK) on a
# free port, its command line prefixed by PREFIX (e.g. taskset -c 0); sets RPORT and RPID (also
# added to PIDS) and waits up to 10 s for PONG.
redis_start() {
	RPORT=$(free_port)
	"$@" redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$WORK" --logfile "$WORK/redis.log" &
	RPID=$!
	PIDS+=("$RPID")
	for _ in $(seq 100); do
		[ "$(redis-cli -p "$RPORT" PING 2>/dev/null)" = PONG ] && return 0
		sleep 0.1
	done
	echo "$(basename "$0"): redis-server did not start" >&2
	return 1
}

# bench_workdir PREFIX: a fresh $WORK removed at exit, with whatever the script started killed
# first: PIDS (an array of background pids) and SPID (one server pid) are the script's to fill.
bench_workdir() {
	WORK=$(mktemp -d "/tmp/$1.XXXXXX")
	PIDS=()
	SPID=
	trap bench_cleanup EXIT
}
bench_cleanup() {
	local p
	for p in "${PIDS[@]}" $SPID; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}

# bench_provenance: COMMIT, DIRTY (changed files under src/) and STARTED for the report.
bench_provenance() {
	COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
	DIRTY=$(git -C "$ROOT" status --porcelain -- src | wc -l)
	STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
}

# wsgate_snapshot SRC DIR: copies the binary (others may rebuild or delete it while we run) and
# sets SHA, MTIME and BUILD (whether it carries sanitizers) for the report.
wsgate_snapshot() {
	cp -p "$1" "$2/wsgate"
	SHA=$(sha256sum "$2/wsgate" | cut -c1-12)
	MTIME=$(date -u -r "$2/wsgate" '+%Y-%m-%d %H:%M UTC')
	if nm "$2/wsgate" 2>/dev/null | grep -q -e __asan_init -e __ubsan_handle; then
		BUILD="SANITIZER BUILD: these numbers say nothing about release speed"
		echo "$(basename "$0"): warning: $1 is built with sanitizers" >&2
	else
		BUILD="no sanitizers"
	fi
}

# nginx_ws_proxy_conf WORK PORT BACKEND_PORT LOCATION: writes WORK/nginx.conf: one worker, the
# usual WebSocket proxy_pass from LOCATION to 127.0.0.1:BACKEND_PORT (run-proxy.sh and
# run-latency-curve.sh measure the same nginx).
nginx_ws_proxy_conf() {
	local work=$1 port=$2 bport=$3 loc=$4
	mkdir -p "$work/nginx-tmp"
	cat >"$work/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path $work/nginx-tmp/body;
    proxy_temp_path $work/nginx-tmp/proxy;
    fastcgi_temp_path $work/nginx-tmp/fastcgi;
    uwsgi_temp_path $work/nginx-tmp/uwsgi;
    scgi_temp_path $work/nginx-tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location $loc {
            proxy_pass http://127.0.0.1:$bport;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
}
EOF
}

# bench_profile PID SECONDS PREFIX: where PID's CPU goes while a load runs, for the "profile that
# explains it" run-all.sh puts beside every target not met. Two perf sessions over the same
# SECONDS: `perf stat` (task-clock and every system call entered: PREFIX.stat) and `perf record`
# of cpu-clock samples (this VM has no PMU), reported by object (PREFIX.dso) and by symbol
# (PREFIX.sym). bench/profile_report.py turns them into one paragraph. A profiled run is extra:
# perf's own cost stays out of the measured repetitions. Without perf (or its permission) the
# files stay empty and the report says so; the benchmark goes on.
bench_profile() {
	local pid=$1 secs=$2 pre=$3 sp
	: >"$pre.stat"
	: >"$pre.dso"
	: >"$pre.sym"
	command -v perf >/dev/null || return 0
	perf stat -x, -o "$pre.stat" -e task-clock -e 'syscalls:sys_enter_*' -p "$pid" \
		-- sleep "$secs" >/dev/null 2>&1 &
	sp=$!
	perf record -q -e cpu-clock -F 997 -p "$pid" -o "$pre.data" -- sleep "$secs" >/dev/null 2>&1 || true
	wait "$sp" || true
	if [ -s "$pre.data" ]; then
		perf report -i "$pre.data" --stdio -q --sort dso --percent-limit 0.5 >"$pre.dso" 2>/dev/null || true
		perf report -i "$pre.data" --stdio -q --sort dso,sym --percent-limit 1 >"$pre.sym" 2>/dev/null || true
	fi
	rm -f "$pre.data" "$pre.data.old"
}

# bench_profile_wsbench LABEL PORT SERVERPID PREFIX WSBENCH-ARGS...: one more wsbench run against
# the server (ARGS with -W 2 and -d 8 or more) with bench_profile on it for 5 s from 1 s after
# the warm-up; appends profile_report.py's paragraph, per message, to $PROF. Its msg/s (perf
# running) only scales the counts: it is not a measured repetition.
bench_profile_wsbench() {
	local label=$1 port=$2 pid=$3 pre=$4 wpid rate
	shift 4
	taskset -c 1 "$BENCH/wsbench" -p "$port" -P /echo "$@" -S "$pid" >"$pre.out" 2>"$pre.err" &
	wpid=$!
	wait_line "$pre.err" 'connections open' 10 "$wpid" || true
	sleep 3
	bench_profile "$pid" 5 "$pre"
	wait "$wpid" || true
	rate=$(grep -o 'msgs_per_s=[0-9.]*' "$pre.out" | cut -d= -f2 || true)
	python3 "$BENCH/profile_report.py" "$pre" "$label" "$(python3 -c "print(${rate:-0} * 5)")" \
		message 5 >>"$PROF"
}

# bench_profile_servers LABEL WSBENCH-ARGS SERVER...: bench_profile_wsbench for each SERVER (its
# port and pid from the caller's PORT and PID arrays), labelled "LABEL: SERVER"; only with
# PROFILE=1 and DURATION of 8 s or more (wsbench's warm-up, then the 5 s window).
bench_profile_servers() {
	local label=$1 args=$2 s
	shift 2
	[ "${PROFILE:-1}" = 1 ] && [ "${DURATION:-10}" -ge 8 ] || return 0
	for s in "$@"; do
		# shellcheck disable=SC2086 # $args is a list of options
		bench_profile_wsbench "$label: $s" "${PORT[$s]}" "${PID[$s]}" "$WORK/prof-$s" $args
	done
}
