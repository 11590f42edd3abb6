#!/usr/bin/env bash
# Installs the system tools the test suite uses, when they are missing:
# iproute2 (ip netns), iptables, netcat-openbsd, socat, tcpdump, openssh (bench),
# and the real middleboxes of the transport tests: squid, nginx-light, dante-server,
# openssl; haproxy (with nginx, the PROXY protocol tests: a load balancer in front of
# tcpipe, a target that reads the header); dnsmasq with dig (DNS over UDP flows). The tests run their own instance of each, with their own configuration,
# inside a namespace; on a host with systemd, Debian's packages also enable and start
# the system services (squid, nginx, danted), which the tests never use.
# Needs root for apt-get; without root it only reports what is missing.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v nc >/dev/null 2>&1 || need+=(netcat-openbsd)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
PATH="$PATH:/usr/sbin:/sbin"
command -v squid >/dev/null 2>&1 || need+=(squid)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v danted >/dev/null 2>&1 || need+=(dante-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
# UDP flows (issue 20): a real resolver and a real DNS client for test/e2e/udp-dns.test.ts.
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
if [ ${#need[@]} -eq 0 ]; then
  echo "install-test-deps: all tools present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${need[*]}; run as root to install them (tests that need them will be skipped)" >&2
  exit 0
fi
echo "install-test-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
