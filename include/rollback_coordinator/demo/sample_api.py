"""The sample deployment's API: serves /health with the version of the deployed release.

Run: python -m rollback_coordinator.demo.sample_api --deploy-root DIR --port-file FILE
It binds to a free port on 127.0.0.1 only, writes that port to FILE, and reads the release
files at every request, so it reports the release the rollback put in place.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_handler(release_dir: Path) -> type[BaseHTTPRequestHandler]:
    class HealthHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
            if self.path != "/health":
                self._reply(404, {"error": "not found"})
                return
            try:
                body = {
                    "service": "api",
                    "version": (release_dir / "VERSION").read_text().strip(),
                    "release": (release_dir / "RELEASE").read_text().strip(),
                }
            except OSError as error:
                self._reply(503, {"error": f"release unreadable: {error}"})
                return
            self._reply(200, body)

        def _reply(self, status: int, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return HealthHandler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploy-root", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args.deploy_root / "api"))
    args.port_file.write_text(f"{server.server_address[1]}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
