# Sourced by the pair probes (miss-pair.sh, page-pair.sh, build-pair.sh). Not meant to be run
# on its own.
#
# pair_origin_start NAME ORIGIN_PORT FILL
#   Starts an nginx origin configured as the harness's, on CPU 0, serving a web root that FILL
#   (a command run with the root as its argument) fills. NAME: scratch directory prefix.
#   Sets: dir (scratch, removed on exit), origin_port, pair_pids (killed on exit).
#   Needs nginx.
# pair_servers_start NAME ORIGIN_PORT OURS_PORT ATS_PORT FILL
#   Builds this proxy, then starts that origin, Apache Traffic Server in front of it and this
#   proxy, all on CPU 0, and waits until both proxies answer. FILL must create obj/1k.bin (the
#   readiness probe fetches it).
#   Also sets: ours_port, ats_port, ours and ats (pids), origin_worker (the origin's worker
#   pid). Needs curl, traffic_server and ../shared/bench/conf/trafficserver-setup.sh.

pair_origin_start() {
    origin_port=$2
    dir=$(mktemp -d "/tmp/httpcache-$1.XXXXXX")
    chmod 755 "$dir"   # nginx workers and Traffic Server drop root and must reach their files
    pair_pids=()
    trap pair_servers_stop EXIT

    mkdir -p "$dir/www" "$dir/origin"
    "$3" "$dir/www"
    # As the harness's origin: sendfile on, so a 1 KB answer leaves as a head and a body write.
    cat > "$dir/origin/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/origin/nginx.pid;
error_log $dir/origin/error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
    sendfile on; tcp_nopush off; tcp_nodelay on;
    keepalive_timeout 65s; keepalive_requests 1000000; access_log off;
    client_body_temp_path $dir/origin; proxy_temp_path $dir/origin;
    fastcgi_temp_path $dir/origin; uwsgi_temp_path $dir/origin; scgi_temp_path $dir/origin;
    server { listen 127.0.0.1:$origin_port backlog=4096 reuseport; root $dir/www; }
}
EOF
    taskset -c 0 nginx -c "$dir/origin/nginx.conf" & pair_pids+=($!)
}

pair_servers_start() {
    ours_port=$3 ats_port=$4
    cargo build --release --quiet
    local bin="${CARGO_TARGET_DIR:-target}/release/httpcache-proxy"
    pair_origin_start "$1" "$2" "$5"
    ../shared/bench/conf/trafficserver-setup.sh "$dir/ats" "$ats_port" "$origin_port" > /dev/null
    # Traffic Server binds its event threads itself (to both CPUs by default); 4 binds event
    # thread n to processing unit n, so its one event thread stays on CPU 0.
    PROXY_CONFIG_EXEC_THREAD_AFFINITY=4 taskset -c 0 traffic_server --run-root="$dir/ats/runroot.yaml" \
        > "$dir/ats.log" 2>&1 & ats=$!; pair_pids+=($ats)
    taskset -c 0 "$bin" 60 --port "$ours_port" --upstream-port "$origin_port" --cache-dir "$dir/hc" \
        > "$dir/ours.log" 2>&1 & ours=$!; pair_pids+=($ours)

    local up=
    for _ in $(seq 300); do
        if curl -s -o /dev/null -f "http://127.0.0.1:$ours_port/127.0.0.1:$origin_port/obj/1k.bin" \
            && curl -s -o /dev/null -f "http://127.0.0.1:$ats_port/obj/1k.bin"; then up=1; break; fi
        sleep 0.1
    done
    if [ -z "$up" ]; then
        echo "servers not ready after 30 s; logs:" >&2
        tail -5 "$dir/ours.log" "$dir/ats.log" "$dir/origin/error.log" >&2 || true
        exit 1
    fi
    origin_worker=$(pgrep -P "$(cat "$dir/origin/nginx.pid")" | head -1)
}

pair_servers_stop() {
    for p in "${pair_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}

# CPU ticks (user + system) of a process so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
