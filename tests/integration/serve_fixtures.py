"""A real ``ultrathink serve`` process on an ephemeral loopback port, for the serving tests.

``ServeProcess`` starts the console script with ``--port 0``, reads the port from its
``listening on`` line and, unless told not to, waits for its ``ready in`` line: readiness
signals, never a fixed sleep. ``trained_registry`` trains small models once per module.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ultrathink.cli import main

SPEC = "synthetic:n_bars=1500,seed=7,freq=1D"
SMALL = ("--param", "gbm_n_estimators=20", "--param", "forest_n_estimators=20", "--folds", "3")
START_TIMEOUT_S = 180.0


def train_versions(registry: Path, n: int = 2) -> list[str]:
    """Train ``n`` small versions (v0001 … ) into ``registry``; the second drops the forest."""
    versions = []
    for i in range(n):
        extra = ("--members", "gbm,linear") if i % 2 else ()
        out = _run_main(
            "train", "--data", SPEC, "--registry", str(registry), *SMALL, *extra, "--json"
        )
        versions.append(json.loads(out)["version"])
    return versions


def _run_main(*argv: str) -> str:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    assert code == 0, err.getvalue()
    return out.getvalue()


class ServeProcess:
    """``ultrathink serve`` in a subprocess; use as a context manager (SIGTERM on exit)."""

    def __init__(self, home: Path, *args: str, wait_ready: bool = True, port: int = 0) -> None:
        self.home = home
        self.args = args
        self.wait_ready = wait_ready
        self.requested_port = port  # 0: any free port; a number: that one (a restart)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServeProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRATHINK")}
        env["ULTRATHINK_HOME"] = str(self.home)
        script = Path(sys.executable).parent / "ultrathink"
        self.proc = subprocess.Popen(
            [str(script), "serve", "--port", str(self.requested_port), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            cwd=self.home.parent,
        )  # fmt: skip
        threading.Thread(target=self._pump, daemon=True).start()
        line = self.expect(r"listening on http://127\.0\.0\.1:(\d+)")
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match is not None
        self.port = int(match.group(1))
        if self.wait_ready:
            self.expect(r"^ready in ")

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.proc.stdout.close()  # at EOF: no unclosed pipe (a ResourceWarning is an error)
        self.lines.put("")  # end of output

    def expect(self, pattern: str, timeout_s: float = START_TIMEOUT_S) -> str:
        """The next output line matching ``pattern``; fails with the output so far."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                seen = "".join(self.output)
                raise AssertionError(f"no {pattern!r} within {timeout_s} s: {seen}") from None
            if line == "":
                raise AssertionError(f"server exited before {pattern!r}: {''.join(self.output)}")
            if re.search(pattern, line):
                return line

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_key(self) -> str:
        return (self.home / "serving" / f"run-{self.port}" / "api-key").read_text().strip()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        admin: bool = False,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request; returns (status, parsed JSON body or text)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("content-type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if admin:
            request.add_header("authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                payload = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            payload, status = exc.read(), exc.code
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        """Signal the server and wait for it to exit; returns its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


# --- helpers of the serving test modules ------------------------------------------------------
def trained_registry(tmp_path_factory: Any, n: int = 2) -> Path:
    """A registry with ``n`` small versions, trained once (for a module-scoped fixture).

    Module-scoped fixtures run outside the autouse environment isolation, so training runs
    here with the working directory and ``ULTRATHINK_HOME`` in a fresh temporary directory.
    """
    import pytest

    root = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("ULTRATHINK"):
                mp.delenv(key)
        mp.setenv("ULTRATHINK_HOME", str(root / "home"))
        mp.chdir(root)
        train_versions(root / "models", n)
    return root / "models"


class Reply:
    """One HTTP answer: status, headers (lower-case names) and the parsed JSON body (or text)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body!r})"


class HttpClient:
    """One keep-alive HTTP/1.1 connection to a server on loopback (``http.client``)."""

    def __init__(self, port: int, *, api_key: str | None = None, timeout_s: float = 120.0) -> None:
        import http.client

        self.api_key = api_key
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                admin: bool = False, headers: dict[str, str] | None = None) -> Reply:  # fmt: skip
        """Send one request on the connection and read the whole answer."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        sent = {"content-type": "application/json", **(headers or {})}
        if admin:
            assert self.api_key, "HttpClient(api_key=...) is needed for admin requests"
            sent["authorization"] = f"Bearer {self.api_key}"
        self.conn.request(method, path, body=data, headers=sent)
        response = self.conn.getresponse()
        payload = response.read()
        got = {k.lower(): v for k, v in response.getheaders()}
        try:
            parsed: Any = json.loads(payload)
        except ValueError:
            parsed = payload.decode("utf-8", "replace")
        return Reply(response.status, got, parsed)

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, body, **kwargs)


def wait_until(probe: Any, what: str, timeout_s: float = 60.0, interval_s: float = 0.05) -> Any:
    """Poll ``probe()`` until it returns something truthy (returned); fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)  # polling a condition, with a deadline: not a start-up race
    raise AssertionError(f"{what}: not within {timeout_s} s (last probe: {last!r})")


def primary_features(server: ServeProcess) -> list[str]:
    """The primary version's feature names, in the order a list of numbers must follow."""
    status, models = server.call("GET", "/v1/models")
    assert status == 200, models
    primary = models["routing"]["primary"]
    return next(m["features"] for m in models["models"] if m["version"] == primary)


def feature_rows(names: list[str], n: int, seed: int) -> list[dict[str, float]]:
    """``n`` reproducible rows of random features by name (distinct, so no cache hits)."""
    import random

    rng = random.Random(seed)
    return [{name: rng.gauss(0.0, 1.0) for name in names} for _ in range(n)]


def serving_events(home: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Rows of the ``events`` table of ``<home>/serving/serving.db`` (oldest first)."""
    import sqlite3

    db = sqlite3.connect(home / "serving" / "serving.db")
    try:
        rows = db.execute("SELECT seq, kind, who, detail FROM events ORDER BY seq").fetchall()
    finally:
        db.close()
    events = [{"seq": s, "kind": k, "who": w, "detail": json.loads(d)} for s, k, w, d in rows]
    return [e for e in events if kind is None or e["kind"] == kind]


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``ultrathink.cli.main(argv)`` in this process: exit code, stdout and stderr."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()
