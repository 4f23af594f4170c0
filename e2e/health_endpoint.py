"""A region's health endpoint for the local test cluster: 200 "ok" on /healthz.

Usage: health_endpoint.py <address> <port> <region> <state-dir>
(The state dir is only on the command line so `e2e/cluster.sh down` can find the process.)
"""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] == "/healthz":
            body = f"ok {self.server.region}\n".encode()
            self.send_response(200)
        else:
            body = b"not found\n"
            self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    address, port, region = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    server = http.server.ThreadingHTTPServer((address, port), Handler)
    server.region = region
    server.serve_forever()


if __name__ == "__main__":
    main()
