/** Usage and help text. The README quotes HELP_TEXT verbatim; a test keeps them equal. */
import { DEFAULTS } from '../config/defaults.js';

export const USAGE = `Usage: tcpipe <mode> [<ports>] [<target>] [options]
  <mode>    -c <host>:<port> | --client=<host>:<port>   dial the server (IPv6: [::1]:50000)
            -s <port>        | --server=<port>          listen for the client
  <ports>   -p <port>[,<port>...] | --ports=...         accept user connections here
  <target>  -t <host>        | --target=<host>          connect here for the partner's ports
Try 'tcpipe --help' for every option.`;

export const HELP_TEXT = `tcpipe relays TCP connections and UDP flows between two hosts over one link.

Usage: tcpipe <mode> [<ports>] [<target>] [options]
       tcpipe --config=<file> [options]
       tcpipe status --metrics=<host>:<port>
       tcpipe demo
       tcpipe keygen
       tcpipe (-h | --help | -V | --version)

Mode (exactly one):
  -c, --client=<host>:<port>   Dial the tcpipe server at <host>:<port> and keep the
                               link up, reconnecting with backoff (IPv6: [::1]:50000).
  -c, --client=ws://<host>:<port>/<path> | wss://...
                               The same, with the link inside a WebSocket: through
                               web-only firewalls and reverse proxies (nginx).
  -s, --server=<port>          Listen on <port> for one tcpipe client at a time
                               (one per [[client]] table: see --config).

Relaying (both modes, either or both):
  -p, --ports=<port>[,<port>...]
                               Accept user connections on these ports; the partner
                               connects to its target on the same port. A port may
                               be given as <addr>:<port> or [<v6addr>]:<port> to
                               listen on one address only (default: all addresses),
                               and a range as <a>-<b> (at most 1000 ports).
                               <port>/udp is a UDP port (5353/udp, [::1]:5353/udp);
                               /tcp may be written, and is the default.
  -t, --target=<host>          Connect to <host> when the partner relays a port,
                               on the same port number.
  -t, --target=<port>[/udp]=<host>[:<tport>]
                               Route one port elsewhere (repeatable): the partner's
                               port <port> goes to <host>:<tport> (default <port>).
                               Without a default <host>, only routed ports are
                               served; any other port is refused. TCP and UDP
                               ports are routed apart (-t 5353/udp=dns:53).

The user's real address (PROXY protocol, see README):
      --proxy-protocol=v1|v2   Write a PROXY header (HAProxy's v1 text or v2 binary)
                               to each target before any byte: the user's address
                               and the entry address it reached. Per route:
                               -t <port>=<host>[:<tport>],proxy-protocol=v1|v2|none
                               An older partner, which cannot send the address, is
                               refused.
      --accept-proxy-protocol  The entry ports are behind a load balancer that sends
                               a PROXY header (v1 or v2): the address it names is the
                               user's. A connection without a valid header within
                               ${DEFAULTS.proxyHeaderTimeoutMs / 1000}s is closed and logged.

Security (both ends alike; without either, tcpipe warns that the link is open):
      --secret-file=<path>     Read the shared secret from <path> (one per line:
                               the first dials, all are accepted, for rotation).
                               The variable TCPIPE_SECRET may hold it instead.
                               The link is then TLS 1.3 keyed by the secret:
                               both ends prove it, nothing is readable on the wire.
      --tls-cert=<pem> --tls-key=<pem> --tls-ca=<pem>
                               Mutual TLS 1.3 with certificates instead of a secret.
                               --tls-ca alone: the CA that signs a wss:// server
                               (default: the system's CAs).
      --tls-server-name=<name> Name the client expects in the server's certificate
                               (default: the host it dials).
      --allow=<port>[/udp][,<port>[/udp]...]
                               Ports the partner may ask this side to connect to
                               (default: any port on the -t host); ranges <a>-<b>;
                               a UDP port needs /udp (--allow=53/udp).
      --max-handshakes=<n>     Links still in their handshake at once (default ${DEFAULTS.maxPendingHandshakes}).

Windows (see README, Flow control and memory):
      --max-window=<size>      Largest window one stream grows to (default ${DEFAULTS.maxWindow / 1024 ** 2}M):
                               one stream moves at most this much per round trip.
      --session-budget=<size>  Receive memory the link may hold beyond the initial
                               windows, summed over streams (default ${DEFAULTS.receiveBudget / 1024 ** 2}M).

UDP (flows: one per user address on a /udp port):
      --udp-timeout=<seconds>  End a flow after this long without a datagram either
                               way (default ${DEFAULTS.udpTimeoutSeconds}).
      --udp-max-flows=<n>      Flows at once on this side; at the cap the flow idle
                               longest ends (default ${DEFAULTS.udpMaxFlows}).

Transports:
      --proxy=<url>            Client: dial through http://[user:pass@]host:port
                               (CONNECT) or socks5://[user:pass@]host:port; 'none'
                               ignores the environment. Default: HTTPS_PROXY (tcp,
                               wss) or HTTP_PROXY (ws), ALL_PROXY, and NO_PROXY.
      --proxy-password-file=<path>
                               Client: the proxy password, instead of the URL's
                               (or in the variable TCPIPE_PROXY_PASSWORD).
      --transport=tcp|ws|tcp,ws
                               Server: link transports accepted on the port
                               (default both, told apart by their first bytes).
      --ws-path=<path>         Server: path of WebSocket upgrades (default /tcpipe);
                               any other HTTP request gets a 404.

Operation:
      --config=<file>          Read settings from a TOML file: the long option
                               names as keys (server = 50000, ports = [40000],
                               target = ["appli2", "5432=db:15432"]). Flags on the
                               command line override the file. SIGHUP re-reads it
                               and applies ports, target, routes and allow in place.
                               A server's file may hold [[client]] tables: many
                               sites, each with its own secret-file (or cert-name),
                               ports, target and allow (README, One server, many
                               sites).
      --metrics=<host>:<port>  Serve Prometheus metrics on /metrics and a status
                               snapshot on /status (for 'tcpipe status').

Options:
      --one-per-port           One connection at a time per port: a port stops
                               accepting while its connection is open (the seed's
                               exact behaviour). Default: any number at once.
      --heartbeat=<seconds>    Declare the link dead after this long without an
                               answer to a ping (default ${DEFAULTS.heartbeatSeconds}).
      --resume=<seconds>       When the link drops, hold the user connections this
                               long and resume them, with no byte lost, on the
                               next link (both sides must give it). Default 0:
                               off, every connection closes with the link.
  -v, --verbose                Also log each stream and UDP flow opened and closed.
  -q, --quiet                  Log only warnings and errors.
      --log-format=text|json   Log lines as text (default) or one JSON object each.
  -h, --help                   Show this help.
  -V, --version                Show the version.

Commands:
  demo                         Run both ends, an echo target and some traffic on
                               this machine, print what happened, and exit.
  keygen                       Print a new random secret (256 bits, base64url).
  status                       Print the link, open streams and UDP flows of the
                               instance that serves --metrics at <host>:<port>.

Exit status: 0 on a normal stop (SIGINT, SIGTERM), 1 when tcpipe cannot run
(a port in use, an unreadable file, an instance that does not answer
'status'), 2 for a bad command line or configuration file.

Example (the seed's, with a secret):
  host1$ tcpipe keygen > tcpipe.key && chmod 600 tcpipe.key   # copy it to host2
  host1$ tcpipe -s 50000 -p 40000,40001 --secret-file=tcpipe.key
  host2$ tcpipe -c host1:50000 -t appli2 --secret-file=tcpipe.key
  Connections to host1:40000 and host1:40001 reach appli2:40000 and appli2:40001.`;
