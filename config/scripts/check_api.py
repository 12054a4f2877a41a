#!/usr/bin/env python3
"""Health check of the sample API: GET /health on the port the sample API was started on.

The sample API takes a free port when it starts and writes it to sample/api.port in the data
folder, so several sample deployments (make demo, make up) can run side by side.
"""

import json
import os
import sys
import urllib.error
import urllib.request

port_file = os.path.join(os.environ["ROLLBACK_DATA_DIR"], "sample", "api.port")
try:
    with open(port_file) as handle:
        port = int(handle.read().strip())
except (OSError, ValueError) as error:
    print(f"sample API port unknown ({port_file}: {error}); is the sample API running?")
    sys.exit(1)

url = f"http://127.0.0.1:{port}/health"
try:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
except (urllib.error.URLError, OSError, ValueError) as error:
    print(f"GET {url} failed: {error}")
    sys.exit(1)
print(f"GET {url}: HTTP 200, version {body['version']}, release {body['release'][:12]}")
