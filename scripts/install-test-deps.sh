#!/usr/bin/env bash
# Installs the system tools the test suite uses, when they are missing:
# iproute2 (ip netns), iptables, netcat-openbsd, socat, tcpdump, openssh (bench).
# Needs root for apt-get; without root it only reports what is missing.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v nc >/dev/null 2>&1 || need+=(netcat-openbsd)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
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
