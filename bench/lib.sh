# lib.sh: what the bench scripts that start proxies share. Sourced, not run.
#
# Sets `dir` (a scratch directory, readable by the `postgres` user the demo runs its servers
# as when started by root) and `pids` (processes to stop), and an EXIT trap that stops them
# with SIGINT (the demo stops its servers), waits up to 10 s for each, and removes `dir`.

dir=$(mktemp -d)
chmod 755 "$dir"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$dir"
}
trap cleanup EXIT

# wait_port PORT: returns once something listens on 127.0.0.1:PORT; exits after 30 s.
wait_port() {
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}
