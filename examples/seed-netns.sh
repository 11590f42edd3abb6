#!/usr/bin/env bash
# The seed's example on one machine: two hosts as network namespaces joined by a
# veth cable, host1 forbidden to dial out (the seed's firewall), the seed's two
# commands, and a user application relayed through the pair. Run as root from
# the repository after `npm ci`. It removes everything it made when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
TCPIPE="node $PWD/dist/src/cli/main.js"
H1=tcpipe-host1 H2=tcpipe-host2 KEY=
cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  [ -n "${KEY:-}" ] && rm -f "$KEY"
  ip netns del "$H1" 2>/dev/null || true
  ip netns del "$H2" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add "$H1"; ip netns add "$H2"
ip link add tp-h1 netns "$H1" type veth peer name tp-h2 netns "$H2"
ip -n "$H1" addr add 10.200.0.1/24 dev tp-h1; ip -n "$H1" link set tp-h1 up; ip -n "$H1" link set lo up
ip -n "$H2" addr add 10.200.0.2/24 dev tp-h2; ip -n "$H2" link set tp-h2 up; ip -n "$H2" link set lo up

# The firewall on host1: it accepts the link and the relayed ports, and dials out to nobody.
ip netns exec "$H1" iptables -A OUTPUT -o lo -j ACCEPT
ip netns exec "$H1" iptables -A OUTPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
ip netns exec "$H1" iptables -A OUTPUT -p tcp -j REJECT
echo "host1 (10.200.0.1) may not dial out; host2 (10.200.0.2) may"

# appli2: an application on host2 that answers on ports 40000 and 40001.
ip netns exec "$H2" node -e '
  const net = require("net");
  for (const port of [40000, 40001])
    net.createServer((s) => s.on("data", (d) => s.end(`appli2:${port} got: ${d}`))).listen(port, "127.0.0.1");
' &

KEY=$(mktemp); chmod 600 "$KEY"; $TCPIPE keygen > "$KEY"
echo '$ tcpipe keygen > tcpipe.key     (both hosts read the same file here)'
echo '$ host1: tcpipe -s 50000 -p 40000,40001 --secret-file=tcpipe.key'
ip netns exec "$H1" $TCPIPE -s 50000 -p 40000,40001 --secret-file="$KEY" &
echo '$ host2: tcpipe -c 10.200.0.1:50000 -t 127.0.0.1 --secret-file=tcpipe.key   (appli2 is host2 itself here)'
ip netns exec "$H2" $TCPIPE -c 10.200.0.1:50000 -t 127.0.0.1 --secret-file="$KEY" &

# appli1 and appli3: applications that connect to host1 on 40000 and 40001.
for port in 40000 40001; do
  for attempt in $(seq 1 50); do
    reply=$(ip netns exec "$H1" node -e '
      const s = require("net").connect(+process.argv[1], "10.200.0.1", () => s.write("hello from appli1"));
      let r = ""; s.on("data", (d) => (r += d)); s.on("close", () => { console.log(r); process.exit(r ? 0 : 1); });
      s.on("error", () => process.exit(1));' "$port") && break
    sleep 0.1
  done
  echo "user application -> host1:$port -> $reply"
done
