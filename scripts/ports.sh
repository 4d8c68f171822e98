# Sourced by the bench scripts.
#
# free_port [n]: a port on 127.0.0.1 that the OS calls free, such that the n
# ports from it (default 1) are all free too, as `lockstep up --base-port`
# needs for its n nodes. A single free port is not enough: the next one up
# may be some connection's ephemeral port, and the node given it could not
# listen.
free_port() {
  python3 - "${1:-1}" <<'PY'
import socket, sys
n = int(sys.argv[1])
for _ in range(100):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); base = s.getsockname()[1]; s.close()
    if base + n > 65000:
        continue
    taken = False
    for p in range(base, base + n):
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", p))
        except OSError:
            taken = True
        t.close()
        if taken:
            break
    if not taken:
        print(base); sys.exit(0)
sys.exit("no run of %d free ports found" % n)
PY
}

# wait_port PORT: wait up to 10 s for a RESP server on PORT to answer PING.
wait_port() { for _ in $(seq 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "port $1 never answered" >&2; return 1; }
