"""A real `mlflow server` on 127.0.0.1, and a small proxy in front of it that can refuse
requests (503 with Retry-After), demand basic auth, or demand a bearer token as a Databricks
workspace does, and moto's S3 server: the peers of the remote tests (and of the benches)."""

from __future__ import annotations

import base64
import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    def __init__(self, directory, port=None, serve_artifacts=False):
        self.directory = directory
        self.port = port or free_port()
        self.process = None
        # Proxied artifacts: runs get `mlflow-artifacts:/...` URIs and the server stores
        # their files under `artifacts_destination`.
        self.serve_artifacts = serve_artifacts
        self.artifacts_destination = directory / "proxied"

    def _artifact_options(self) -> list:
        if self.serve_artifacts:
            return ["--serve-artifacts", "--artifacts-destination", str(self.artifacts_destination)]
        return ["--default-artifact-root", str(self.directory / "artifacts")]

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.directory / 'server.db'}",
                *self._artifact_options(),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        raise RuntimeError("mlflow server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=60)
            self.process = None


class S3Server:
    """moto's S3 server on 127.0.0.1 with one bucket, and the environment MLflow's boto3
    path reads to reach it."""

    def __init__(self, directory, bucket: str):
        self.log = os.path.join(directory, "moto.log")
        self.bucket = bucket
        self.endpoint = f"http://127.0.0.1:{free_port()}"
        self.env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }
        self.process = None

    def start(self) -> S3Server:
        port = self.endpoint.rsplit(":", 1)[1]
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.endpoint, timeout=2).close()
                break
            except OSError as e:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    with open(self.log, errors="replace") as f:
                        raise RuntimeError(f"moto server did not start: {f.read()[-2000:]}") from e
                time.sleep(0.2)
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_DEFAULT_REGION"],
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


class Proxy:
    """Forwards to ``target``; refuses ``refuse`` log-batch calls with 503 first, and checks
    basic auth when ``credentials`` is set."""

    def __init__(
        self,
        target: str,
        refuse: int = 0,
        retry_after: str = "1",
        credentials=None,
        certificate=None,
        token=None,
    ):
        self.target = target
        self.refuse = refuse
        self.refused = 0
        self.forwarded = 0
        self.retry_after = retry_after
        self.expected = (
            "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
            if credentials
            else None
        )
        # A workspace's answers: 401 without credentials, 403 for a token it does not know.
        self.token = token
        self.authorizations = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                sent = self.headers.get("Authorization")
                proxy.authorizations.append(sent)
                if proxy.token is not None and sent != f"Bearer {proxy.token}":
                    if sent is None:
                        self._answer(
                            401,
                            b'{"error_code": "401", "message": "Credential was not sent or '
                            b'was of an unsupported type for this API."}',
                        )
                    else:
                        self._answer(
                            403, b'{"error_code": "403", "message": "Invalid access token."}'
                        )
                    return
                if proxy.expected and sent != proxy.expected:
                    self._answer(
                        401,
                        b'{"error_code": "UNAUTHENTICATED", "message": '
                        b'"You are not authenticated."}',
                    )
                    return
                if "log-batch" in self.path and proxy.refused < proxy.refuse:
                    proxy.refused += 1
                    self._answer(503, b"unavailable", {"Retry-After": proxy.retry_after})
                    return
                request = urllib.request.Request(
                    proxy.target + self.path, data=body, method=self.command
                )
                for name in ("Content-Type",):
                    if self.headers.get(name):
                        request.add_header(name, self.headers[name])
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as e:
                    status, payload = e.code, e.read()
                proxy.forwarded += 1
                self._answer(status, payload)

            def _answer(self, status, payload, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.uri = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def certificates(directory):
    """A test CA that no system trusts and a certificate it signed for 127.0.0.1:
    (certificate, key, CA certificate) paths."""

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
    )
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=fastflow test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
    )
    return (str(directory / "cert.pem"), str(directory / "key.pem"), str(directory / "ca.pem"))
