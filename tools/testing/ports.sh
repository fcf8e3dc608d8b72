# Sourced by the multi-process shell tests: TCP ports on 127.0.0.1 for the servers they start.
#
# Ports come from below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999
# by default). A port inside that range can be taken at any moment as the local end of some
# outgoing connection (another test's client, a member dialling its peers); the probe below does
# not see such a port, since nothing listens on it, and the server's bind then fails with
# EADDRINUSE. That is how migrate_test's fourth member once never started (stop 24's CI).
# The C++ tests' harness (node/http_testing.h, ReserveLoopbackPort) takes its ports from
# 10000-19999, so these come from 20000 up: the two never hand out the same port.
# Ports handed out are remembered in a file, so that two calls never return the same port even
# from command substitutions (subshells).

ports_taken_file="${ports_taken_file:-${TEST_TMPDIR:-/tmp}/ports_taken.$$}"
# The range [ports_low, ports_high] the ports come from.
ports_low=20000
ports_high=32000
if read -r _eph_low _eph_high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
  if ((_eph_low > ports_low + 2000)); then
    ports_high=$((_eph_low - 2))
  else  # an unusual ephemeral range low down: use the ports above it instead
    ports_low=$((_eph_high + 1))
    ports_high=65533
  fi
fi

# port_in_use PORT: true when something listens on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port_taken PORT: true when this test already handed PORT out.
port_taken() { [ -f "$ports_taken_file" ] && grep -qx "$1" "$ports_taken_file"; }

# free_ports N: prints the first of N consecutive ports that nobody listens on and that this test
# has not handed out before, and records them as handed out.
free_ports() {
  local n=$1 port i ok
  for _ in $(seq 1 1000); do
    port=$((ports_low + (RANDOM * 32768 + RANDOM) % (ports_high - ports_low - n + 2)))
    ok=1
    for ((i = 0; i < n; i++)); do
      if port_taken $((port + i)) || port_in_use $((port + i)); then
        ok=0
        break
      fi
    done
    if ((ok)); then
      for ((i = 0; i < n; i++)); do echo $((port + i)) >>"$ports_taken_file"; done
      echo "$port"
      return 0
    fi
  done
  echo "no free port in $ports_low-$ports_high" >&2
  return 1
}

# free_port: one port. free_port_pair: two consecutive ports (client, then peer).
free_port() { free_ports 1; }
free_port_pair() { free_ports 2; }
