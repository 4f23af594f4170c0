//! The kind lane's workload image: an HTTP server that says which node and which target
//! (region or edge) served each request, and the load client that measures an outage as a
//! client sees it.
//!
//! ```text
//! workload serve [PORT]                       # answers GET with {"target","node","pod"}
//! workload client HOST:PORT RATE SECONDS      # one line per request on stdout
//! ```
//! The server reads `TARGET`, `NODE_NAME` and `POD_NAME` from its environment (the
//! Deployment sets them through the downward API). The client takes an address, not a
//! name: the image is static and has no resolver. Each request is a new connection, so
//! kube-proxy picks an endpoint for every one, as it does for many independent clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a client waits for a connection: room for the kernel's SYN retransmissions 1 s
/// and 3 s after the first SYN. Browsers and curl wait far longer, so a lost SYN delays a
/// user's request rather than failing it; the suite counts such slow answers separately.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("serve") => serve(args.get(2).map(String::as_str).unwrap_or("8080")),
        Some("client") if args.len() == 5 => client(&args[2], &args[3], &args[4]),
        _ => Err("usage: workload serve [PORT] | workload client HOST:PORT RATE SECONDS".into()),
    };
    if let Err(e) = result {
        eprintln!("workload: {e}");
        std::process::exit(2);
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| "unknown".into())
}

fn serve(port: &str) -> Result<(), String> {
    let listener =
        TcpListener::bind(format!("0.0.0.0:{port}")).map_err(|e| format!("bind :{port}: {e}"))?;
    let body = format!(
        "{{\"target\":\"{}\",\"node\":\"{}\",\"pod\":\"{}\"}}\n",
        env("TARGET"),
        env("NODE_NAME"),
        env("POD_NAME")
    );
    eprintln!("workload: serving on :{port} as {}", body.trim());
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let body = body.clone();
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 2048];
            // One request per connection: read until the end of the headers, then answer.
            let mut seen = Vec::new();
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if seen.windows(4).any(|w| w == b"\r\n\r\n") || seen.len() > 16 * 1024 {
                    break;
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        });
    }
    Ok(())
}

fn client(addr: &str, rate: &str, seconds: &str) -> Result<(), String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?;
    let rate: u32 = rate.parse().map_err(|e| format!("rate {rate:?}: {e}"))?;
    let seconds: u64 = seconds
        .parse()
        .map_err(|e| format!("seconds {seconds:?}: {e}"))?;
    if rate == 0 {
        return Err("rate must be > 0".into());
    }
    let period = Duration::from_secs(1) / rate;
    let start = Instant::now();
    let mut next = start;
    let mut running = Vec::new();
    let mut ports = SourcePorts::default();
    while start.elapsed() < Duration::from_secs(seconds) {
        let first_port = ports.next();
        // Each request on its own thread, so one waiting on a lost node does not slow the
        // rate: many independent clients, one line each.
        running.push(std::thread::spawn(move || {
            let sent_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let t = Instant::now();
            let line = match request(addr, first_port) {
                Ok(body) => format!("{sent_ms} ok {} {}", t.elapsed().as_millis(), body.trim()),
                Err(e) => format!("{sent_ms} err {} {e}", t.elapsed().as_millis()),
            };
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }));
        running.retain(|h| !h.is_finished());
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    for h in running {
        let _ = h.join();
    }
    Ok(())
}

/// Source ports in turn, each used once per pass through 20000–59999 (40,000 requests, over
/// half an hour at 20 a second), where the kernel would pick the next ephemeral port itself
/// and come back to the same one within a minute at this rate. A reused port whose last
/// SYN went unanswered (a lost node) still has that connection's conntrack entry (SYN_SENT,
/// kept 120 s) on the client's node, which sends the new SYN to the old, dead endpoint
/// whatever the EndpointSlices now say; many independent clients do not reuse one address
/// and port that fast, so the client must not either.
#[derive(Default)]
struct SourcePorts(u32);

impl SourcePorts {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 40_000;

    fn next(&mut self) -> u16 {
        let port = Self::FIRST + self.0 % Self::COUNT;
        self.0 = self.0.wrapping_add(1);
        port as u16
    }
}

/// A connection to `addr` from the first free source port from `port` on.
fn connect(addr: SocketAddr, port: u16) -> Result<TcpStream, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut last = String::from("no free source port");
    for p in (port..=u16::MAX).take(64) {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| format!("socket: {e}"))?;
        if let Err(e) = socket.bind(&SocketAddr::from(([0, 0, 0, 0], p)).into()) {
            last = format!("bind :{p}: {e}");
            continue;
        }
        socket
            .connect_timeout(&addr.into(), CONNECT_TIMEOUT)
            .map_err(|e| format!("connect: {e}"))?;
        return Ok(socket.into());
    }
    Err(last)
}

/// One GET from source port `port` (or the next free one): `CONNECT_TIMEOUT` to connect and
/// 2 s for the answer; the body on a 200.
fn request(addr: SocketAddr, port: u16) -> Result<String, String> {
    let mut s = connect(addr, port)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = out.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("status: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.replace(' ', ""))
}
