"""Azure ML on loopback, for tests: the real SDKs (azure-identity, azure-ai-ml, azureml-mlflow,
azure-storage-blob) talk to it as they talk to Azure, and nothing of theirs is patched.

What runs, all on 127.0.0.1:

- one HTTPS server (certificate made at test time by `TestCertificates`, trusted through
  REQUESTS_CA_BUNDLE / SSL_CERT_FILE) that answers
  - Microsoft Entra's token endpoint for workload identity (`AZURE_AUTHORITY_HOST` points here),
  - Azure Resource Manager's workspace request (`AZUREML_DEV_URL_MFE` points here),
  - Azure ML's MLflow API, forwarded to a real `mlflow server` (`tests/support/mlflow_server.py`),
  - Azure ML's run history artifact API, which hands out SAS URLs of real blobs;
- Azurite (the blob store emulator, from npm, under `.ci/azurite`) over HTTPS, holding the
  artifacts;
- an HTTP CONNECT proxy (`HTTPS_PROXY`): the SAS URLs name the production host
  `devstoreaccount1.blob.core.windows.net`, as Azure's do (azureml-mlflow downloads only URLs of
  that shape: `is_source_uri_matches_storage_blob` in
  `azureml/mlflow/_client/artifact/_utils/blob_artifact_util.py`), and the proxy tunnels exactly
  those to Azurite, never anywhere else.

Every request is recorded (`AzureService.requests`) so tests can assert what was asked.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import select
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_DIR = REPO_ROOT / ".ci" / "azurite"
AZURITE_BIN = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
# Azurite's documented development account (a public, fixed key).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")
BLOB_HOST = f"{AZURITE_ACCOUNT}.blob.core.windows.net"
ARTIFACT_CONTAINER = "azureml"
TENANT_ID = "00000000-0000-0000-0000-00000000aaaa"
CLIENT_ID = "00000000-0000-0000-0000-00000000bbbb"
SUBSCRIPTION_ID = "00000000-0000-0000-0000-00000000cccc"
RESOURCE_GROUP = "rg-loopback"
WORKSPACE_NAME = "mlw-loopback"
WORKSPACE_SCOPE = (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
                   f"/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE_NAME}")
_WORKSPACE_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/?]+)$", re.IGNORECASE)
_HISTORY_ARTIFACTS = re.compile(
    r"^/history/v1\.0" + re.escape(WORKSPACE_SCOPE)
    + r"/experiments/(?P<experiment>[^/]+)/runs/(?P<run>[^/]+)/artifacts(?P<rest>/.*)?$")


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class TestCertificates:
    """A CA made for this test session and one server certificate it signed, valid for
    127.0.0.1, localhost and the blob host. `bundle` is what REQUESTS_CA_BUNDLE names."""

    bundle: Path
    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path) -> TestCertificates:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "osmo-inline test CA")])
        ca_cert = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.DNSName("localhost"), x509.DNSName(BLOB_HOST),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        paths = cls(bundle=directory / "ca.pem", cert=directory / "server.pem",
                    key=directory / "server-key.pem")
        paths.bundle.write_bytes(ca_cert.public_bytes(pem))
        paths.cert.write_bytes(cert.public_bytes(pem))
        paths.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
        return paths

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.bundle))


# --------------------------------------------------------------------------- Azurite


class Azurite:
    """`azurite-blob` over HTTPS on a free loopback port, its data in `root`."""

    def __init__(self, root: Path, certificates: TestCertificates) -> None:
        self.root = root
        self.certificates = certificates
        self.port = 0
        self._process: subprocess.Popen | None = None

    @property
    def telemetry_id(self) -> Path:
        """The instance id Azurite keeps in its data folder once its telemetry starts
        (azurite/dist/src/common/Telemetry.js, GetInstanceID: <location>/AzuriteConfig)."""
        return self.root / "data" / "AzuriteConfig"

    def start(self) -> Azurite:
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"{AZURITE_BIN} is missing: run scripts/setup.sh")
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "azurite.log").open("w")
        self._process = subprocess.Popen(
            [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", "0",
             "--location", str(self.root / "data"), "--skipApiVersionCheck",
             # Loopback only: Azurite reports usage to Application Insights by default.
             "--disableTelemetry",
             "--cert", str(self.certificates.cert), "--key", str(self.certificates.key)],
            stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        assert self._process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # "... successfully listens on https://127.0.0.1:N"
            line = self._process.stdout.readline()
            if not line:
                break
            found = re.search(r"listens on https://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                threading.Thread(target=self._process.stdout.read, daemon=True).start()
                return self
        self.stop()
        raise RuntimeError("azurite did not start: " + (self.root / "azurite.log").read_text())

    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=https;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=https://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};")

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=30)
            self._process = None


# --------------------------------------------------------------------------- CONNECT proxy


class BlobProxy:
    """An HTTP CONNECT proxy that tunnels `devstoreaccount1.blob.core.windows.net:443` to
    Azurite and refuses every other destination (403): what HTTPS_PROXY names in the tests.
    requests (azure-core's transport) sends CONNECT for https URLs when HTTPS_PROXY is set and
    the host is not in NO_PROXY; the TLS session then runs end to end with Azurite."""

    def __init__(self, azurite: Azurite) -> None:
        self.azurite = azurite
        self.refused: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _ = (request_line.split(" ") + ["", ""])[:3]
            if method != "CONNECT" or target.lower() != f"{BLOB_HOST}:443":
                self.refused.append(request_line)
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            with socket.create_connection(("127.0.0.1", self.azurite.port)) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                sockets = [client, upstream]
                # A side that goes away mid-transfer (a launcher the test SIGKILLs while it
                # uploads) ends the tunnel as a closed one does.
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    while True:
                        readable, _, _ = select.select(sockets, [], [], 60)
                        if not readable:
                            return
                        for source in readable:
                            data = source.recv(65536)
                            if not data:
                                return
                            (upstream if source is client else client).sendall(data)

    def close(self) -> None:
        self._server.close()


# --------------------------------------------------------------------------- the service


@dataclass
class Recorded:
    method: str
    path: str
    authorization: str


@dataclass
class ServiceState:
    mlflow_url: str
    blob: object  # azure.storage.blob.ContainerClient for the artifact container
    federated_token: str
    access_token: str = field(default_factory=lambda: "loopback-" + uuid.uuid4().hex)
    # What the token endpoint answers instead of a token, when a test sets it (status, body).
    token_refusal: tuple[int, dict] | None = None
    requests: list[Recorded] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ServiceServer

    def log_message(self, *args: object) -> None:
        pass

    # One entry point for all methods: the routes below decide.
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    @property
    def state(self) -> ServiceState:
        return self.server.state

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        self.state.requests.append(Recorded(self.command, url.path,
                                            self.headers.get("Authorization", "")))
        try:
            if url.path.startswith("/mlflow/"):
                return self._mlflow(url, body)
            if url.path.startswith("/history/"):
                return self._history(url, body)
            if _WORKSPACE_PATH.match(url.path):
                return self._workspace(url)
            if url.path.endswith("/oauth2/v2.0/token"):
                return self._token(body)
            if url.path.endswith("/.well-known/openid-configuration"):
                return self._openid_configuration(url.path)
            if url.path.endswith("/oauth2/v2.0/devicecode"):
                # Device code sign-in would print a prompt and poll: tests assert nobody asks.
                return self._json(400, {"error": "invalid_request",
                                        "error_description": "loopback: no device code"})
            self._json(404, {"error": {"code": "NotFound", "message": url.path}})
        except Exception as error:  # a bug in this stand-in: make it visible to the client
            self._json(500, {"error": {"code": "LoopbackServiceError", "message": repr(error)}})

    # -- Microsoft Entra ID ---------------------------------------------------------------

    def _openid_configuration(self, path: str) -> None:
        # The discovery document MSAL reads before its first token request
        # (https://login.microsoftonline.com/<tenant>/v2.0/.well-known/openid-configuration).
        base = f"https://127.0.0.1:{self.server.server_port}/{path.split('/')[1]}"
        self._json(200, {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        })

    def _token(self, body: bytes) -> None:
        # azure-identity's ClientAssertionCredential (which WorkloadIdentityCredential is) posts
        # grant_type=client_credentials with the federated token as client_assertion
        # (azure/identity/_internal/aad_client_base.py, _get_client_assertion_request); Entra
        # answers a token, or an error with error_description ("AADSTS...: ...").
        form = urllib.parse.parse_qs(body.decode())
        if self.state.token_refusal is not None:
            status, answer = self.state.token_refusal
            return self._json(status, answer)
        assertion = form.get("client_assertion", [""])[0]
        if form.get("client_id", [""])[0] != CLIENT_ID or assertion != self.state.federated_token:
            return self._json(401, {
                "error": "invalid_client",
                "error_description": "AADSTS700213: No matching federated identity record found "
                                     "for presented assertion subject.",
            })
        self._json(200, {"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600,
                         "access_token": self.state.access_token})

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.state.access_token}":
            return True
        # Azure answers 401 with an error body and a WWW-Authenticate challenge.
        self._json(401, {"error": {"code": "InvalidAuthenticationToken",
                                   "message": "The access token is invalid."}},
                   extra={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return False

    # -- Azure Resource Manager: the workspace ---------------------------------------------

    def _workspace(self, url: urllib.parse.SplitResult) -> None:
        if not self._authorized():
            return
        found = _WORKSPACE_PATH.match(url.path)
        assert found is not None
        if (found["sub"], found["rg"].lower(), found["ws"]) != (
                SUBSCRIPTION_ID, RESOURCE_GROUP.lower(), WORKSPACE_NAME):
            return self._json(404, {"error": {
                "code": "ResourceNotFound",
                "message": f"The Resource 'Microsoft.MachineLearningServices/workspaces/"
                           f"{found['ws']}' under resource group '{found['rg']}' was not found."}})
        # The shape of Workspaces_Get (Microsoft.MachineLearningServices REST API): the
        # tracking URI uses /mlflow/v1.0/, which azure-ai-ml rewrites to /mlflow/v2.0/.
        host = f"127.0.0.1:{self.server.server_port}"
        self._json(200, {
            "id": WORKSPACE_SCOPE, "name": WORKSPACE_NAME, "kind": "Default",
            "type": "Microsoft.MachineLearningServices/workspaces", "location": "loopback",
            "properties": {
                "friendlyName": WORKSPACE_NAME, "workspaceId": str(uuid.uuid5(
                    uuid.NAMESPACE_URL, WORKSPACE_SCOPE)),
                "discoveryUrl": f"https://{host}/discovery",
                "mlFlowTrackingUri": f"azureml://{host}/mlflow/v1.0{WORKSPACE_SCOPE}",
                "provisioningState": "Succeeded", "publicNetworkAccess": "Enabled",
            },
        })

    # -- Azure ML's MLflow API, answered by a real mlflow server ---------------------------

    def _mlflow(self, url: urllib.parse.SplitResult, body: bytes) -> None:
        if not self._authorized():
            return
        prefix = f"/mlflow/v2.0{WORKSPACE_SCOPE}"
        if not url.path.startswith(prefix + "/api/"):
            return self._json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": url.path})
        api_path = url.path[len(prefix):]
        if api_path.endswith("/mlflow/experiments/create") and body:
            # Azure ML gives every run an artifact URI of its own workspace scope,
            # azureml://<host>/mlflow/v2.0/<scope>/experiments/<id>/runs/<run>/artifacts,
            # which azureml-mlflow's artifact repository parses
            # (azureml/mlflow/_internal/utils.py, _ARTIFACT_URI_EXP_RUN_REGEX). The server
            # behind gives a run `<experiment artifact_location>/<run>/artifacts`.
            request = json.loads(body)
            request.setdefault("artifact_location", (
                f"azureml://127.0.0.1:{self.server.server_port}/mlflow/v2.0{WORKSPACE_SCOPE}"
                f"/experiments/{uuid.uuid4().hex}/runs"))
            body = json.dumps(request).encode()
        target = self.state.mlflow_url + api_path + (f"?{url.query}" if url.query else "")
        forwarded = urllib.request.Request(target, data=body or None, method=self.command,
                                           headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(forwarded, timeout=60) as answer:
                status, payload = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        self._send(status, payload, "application/json")

    # -- Azure ML's run history: artifacts as blobs ----------------------------------------

    def _history(self, url: urllib.parse.SplitResult, body: bytes) -> None:
        if not self._authorized():
            return
        found = _HISTORY_ARTIFACTS.match(url.path)
        if found is None:
            return self._json(404, {"error": {"code": "NotFound", "message": url.path}})
        run, rest = found["run"], found["rest"] or ""
        prefix = f"ExperimentRun/dcid.{run}/"
        query = urllib.parse.parse_qs(url.query)
        blob = self.state.blob
        if rest == "/batch/metadata" and self.command == "POST":
            # batch_create_empty_artifacts: one SAS URL (create + write) per path asked for.
            paths = [item["path"] for item in json.loads(body)["paths"]]
            return self._json(200, {
                "artifacts": {p: self._artifact(run, p) for p in paths},
                "artifactContentInformation": {
                    p: self._content(run, p, write=True) for p in paths},
                "errors": {},
            })
        if rest == "/contentinfo":
            path = query.get("path", [""])[0]
            if not blob.get_blob_client(prefix + path).exists():
                return self._json(404, {"error": {"code": "UserError",
                                                  "message": f"artifact {path} not found"}})
            return self._json(200, self._content(run, path, write=False))
        if rest == "":
            # list_in_container: every artifact of the run, one page.
            names = [b.name[len(prefix):] for b in blob.list_blobs(name_starts_with=prefix)]
            return self._json(200, {"value": [self._artifact(run, n) for n in names],
                                    "continuationToken": None, "nextLink": None})
        self._json(404, {"error": {"code": "NotFound", "message": url.path}})

    def _artifact(self, run: str, path: str) -> dict:
        return {"artifactId": f"ExperimentRun/dcid.{run}/{path}", "origin": "ExperimentRun",
                "container": f"dcid.{run}", "path": path}

    def _content(self, run: str, path: str, *, write: bool) -> dict:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        name = f"ExperimentRun/dcid.{run}/{path}"
        permission = BlobSasPermissions(read=True, create=write, write=write)
        sas = generate_blob_sas(AZURITE_ACCOUNT, ARTIFACT_CONTAINER, name,
                                account_key=AZURITE_KEY, permission=permission,
                                expiry=datetime.datetime.now(datetime.timezone.utc)
                                + datetime.timedelta(hours=1))
        uri = f"https://{BLOB_HOST}/{ARTIFACT_CONTAINER}/{urllib.parse.quote(name)}?{sas}"
        return {"contentUri": uri, "origin": "ExperimentRun", "container": f"dcid.{run}",
                "path": path}

    # -- plumbing ---------------------------------------------------------------------------

    def _json(self, status: int, payload: dict, extra: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", extra)

    def _send(self, status: int, payload: bytes, content_type: str,
              extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class _ServiceServer(ThreadingHTTPServer):
    daemon_threads = True
    state: ServiceState


class AzureService:
    """The loopback Azure ML service (see the module docstring). `environment()` is what a
    process needs to reach it with a workload identity."""

    def __init__(self, root: Path, mlflow_url: str) -> None:
        self.root = root
        self.certificates = TestCertificates.create(root / "tls")
        self.azurite = Azurite(root / "azurite", self.certificates).start()
        self.proxy = BlobProxy(self.azurite)
        from azure.storage.blob import BlobServiceClient

        # The service's own client reaches Azurite directly (no proxy, 127.0.0.1).
        container = BlobServiceClient.from_connection_string(
            self.azurite.connection_string(),
            connection_verify=str(self.certificates.bundle),
        ).get_container_client(ARTIFACT_CONTAINER)
        container.create_container()
        self.token_file = root / "federated-token"
        self.token_file.write_text("eyJ.loopback-federated-token." + uuid.uuid4().hex)
        self.state = ServiceState(mlflow_url=mlflow_url, blob=container,
                                  federated_token=self.token_file.read_text())
        self._server = _ServiceServer(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._server.socket = self.certificates.server_context().wrap_socket(
            self._server.socket, server_side=True)
        self.port = self._server.server_port
        self.url = f"https://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def requests(self) -> list[Recorded]:
        return self.state.requests

    def requests_to(self, fragment: str) -> list[Recorded]:
        return [r for r in self.state.requests if fragment in r.path]

    def environment(self, *, workload_identity: bool = True) -> dict[str, str]:
        """Variables for a process that uses this service: the workspace, the loopback
        authorities, the certificate, the blob proxy and (by default) a workload identity."""
        env = {
            "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION_ID,
            "AZURE_RESOURCE_GROUP": RESOURCE_GROUP,
            "AZUREML_WORKSPACE_NAME": WORKSPACE_NAME,
            **loopback_authority_environment(self.url),
            "AZUREML_DEV_URL_MFE": self.url,
            "REQUESTS_CA_BUNDLE": str(self.certificates.bundle),
            "SSL_CERT_FILE": str(self.certificates.bundle),
            "HTTPS_PROXY": self.proxy.url,
            "NO_PROXY": "127.0.0.1,localhost",
            # MLflow 3 reports usage to config.mlflow-telemetry.io unless told not to.
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
        if workload_identity:
            env.update({"AZURE_CLIENT_ID": CLIENT_ID, "AZURE_TENANT_ID": TENANT_ID,
                        "AZURE_FEDERATED_TOKEN_FILE": str(self.token_file)})
        return env

    def blob_names(self, run_id: str) -> set[str]:
        prefix = f"ExperimentRun/dcid.{run_id}/"
        return {b.name[len(prefix):] for b in self.state.blob.list_blobs(name_starts_with=prefix)}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.proxy.close()
        self.azurite.stop()


# Variables that keep azure-identity on loopback: the Entra authority (workload identity,
# MSAL-based credentials) and the managed identity endpoint, whose default is the instance
# metadata address 169.254.169.254 (azure/identity/_credentials/imds.py reads
# AZURE_POD_IDENTITY_AUTHORITY_HOST in its place).
LOOPBACK_CREDENTIAL_VARIABLES = ("AZURE_AUTHORITY_HOST", "AZURE_POD_IDENTITY_AUTHORITY_HOST")


def loopback_authority_environment(url: str) -> dict[str, str]:
    return {name: url for name in LOOPBACK_CREDENTIAL_VARIABLES}


def assert_loopback_credential_environment(env: dict[str, str] | os._Environ) -> None:
    """Refuse to build a credential that could reach outside 127.0.0.1."""
    for name in LOOPBACK_CREDENTIAL_VARIABLES:
        value = env.get(name, "")
        host = urllib.parse.urlsplit(value).hostname
        assert host == "127.0.0.1", f"{name}={value!r}: a credential must stay on loopback"



GUARD_DIR = Path(__file__).resolve().parent / "loopback_guard"


def child_env(base: dict[str, str], guard_log: Path) -> dict[str, str]:
    """base plus the loopback guard (support/loopback.py) for a child process: its
    sitecustomize first on PYTHONPATH, refused connects written to guard_log."""
    assert_loopback_credential_environment(base)
    env = dict(base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD_DIR), env.get("PYTHONPATH")]))
    env["LOOPBACK_GUARD_LOG"] = str(guard_log)
    return env
