"""An OTLP/HTTP collector that accepts every export and keeps nothing: the far end for
measuring what exporting spans costs the server.

Usage: otlp_sink.py PORT   (then run the server with OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:PORT)
Prints the requests and bytes it took when stopped with Ctrl-C.
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

taken = {"requests": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        taken["requests"] += 1
        taken["bytes"] += length
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print(f"otlp sink: {taken['requests']} exports, {taken['bytes']} bytes")
