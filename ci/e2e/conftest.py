"""Fixtures that run the real `spate` binary for the end-to-end suite.

Each test gets its own broker process on a free loopback port with a fresh data directory on
the real disk (the broker writes with O_DIRECT, which tmpfs refuses), removed after the test
unless it failed or SPATE_KEEP_TEST_DATA is set. The broker's stderr goes to a file in the
test's tmp dir; when a test fails, the tail of every broker log it started and the paths of
their data dirs are attached to the failure report. At teardown each broker still running is
stopped with SIGTERM and must exit with status 0: a clean shutdown is part of the contract
under test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# How long a broker may take to accept connections after exec, and to exit after SIGTERM.
# Generous because the machine is small and shared with other builds; these bound waits, they
# are not assertions about speed.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES_MAX = 80
# Starts tried when the broker's admin port turns out to be taken (see Broker.start).
ADMIN_PORT_ATTEMPTS = 3


def target_dir() -> Path:
    configured = os.environ.get("CARGO_TARGET_DIR")
    if configured:
        return Path(configured)
    return REPO_ROOT / "target"


def spate_bin() -> Path:
    configured = os.environ.get("SPATE_BIN")
    path = Path(configured) if configured else target_dir() / "release" / "spate"
    if not path.is_file():
        pytest.exit(f"spate binary not found at {path}; build it or set SPATE_BIN", returncode=2)
    return path


def data_root() -> Path:
    # Under the target dir: on the real disk (O_DIRECT) and already ignored by git.
    root = Path(os.environ.get("SPATE_E2E_DATA", target_dir() / "e2e-data"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def broker_env() -> dict[str, str]:
    # The broker reads SPATE_* variables as settings and refuses unknown ones, so the suite's
    # own SPATE_BIN / SPATE_E2E_* must not leak into it; settings go on the command line.
    return {k: v for k, v in os.environ.items() if not k.startswith("SPATE_")}


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now, and never one this test session handed out before: the kernel may
    give the same ephemeral port to two calls in a row once the first probe closes, and a
    broker given it twice (as --listen and --admin-listen, say) fails to start."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class Broker:
    """One spate process; restartable on the same port and data directory."""

    def __init__(self, name: str, log_dir: Path, cores: int, extra_args: list[str],
                 data_dir: Path | None = None):
        self.name = name
        self.port = free_port()
        # Its own admin port (/metrics, /health, /ready): brokers of one test, or of tests
        # running side by side, must not meet on the default 9644.
        self.admin_port = free_port()
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=data_root()))
        self.data_dir = data_dir
        self.log_path = log_dir / f"{name}.log"
        self.cores = cores
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_address(self) -> str:
        return f"127.0.0.1:{self.admin_port}"

    def command(self) -> list[str]:
        admin = [] if any(a.startswith("--admin-listen") for a in self.extra_args) else [
            "--admin-listen", self.admin_address]
        return [
            str(spate_bin()),
            "--listen", self.bootstrap,
            *admin,
            "--data-dir", str(self.data_dir),
            "--cores", str(self.cores),
            *self.extra_args,
        ]

    def start(self) -> "Broker":
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        for attempt in range(ADMIN_PORT_ATTEMPTS):
            self.starts += 1
            with open(self.log_path, "ab") as log:
                log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    self.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=broker_env(),
                )
            try:
                self._wait_accepting()
                return self
            except AssertionError as e:
                # The admin port was picked from the ephemeral range (free_port), so between
                # two starts a client's outgoing connection may hold it; the broker binds it
                # without SO_REUSEPORT (on purpose: two brokers must not share it) and exits.
                # Another free port is taken; any other startup failure is the test's.
                taken = f"admin-listen {self.admin_address} is not available" in str(e)
                if not taken or attempt + 1 == ADMIN_PORT_ATTEMPTS:
                    raise
                self.admin_port = free_port()
        raise AssertionError("unreachable")

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(
                    f"broker exited with {code} during startup\n{self.log_tail()}"
                )
            # Every core binds the port on its own (SO_REUSEPORT) once its partitions are
            # recovered; a connection accepted by the first core may ask for partitions of a
            # core still recovering (UNKNOWN_TOPIC_OR_PART). Ready means all cores accept.
            if self._cores_accepting() >= self.cores:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"broker did not accept within {START_TIMEOUT_S}s\n{self.log_tail()}")

    def _cores_accepting(self) -> int:
        text = self.log_path.read_text(errors="replace")
        since_start = text.rsplit(f"===== start #{self.starts}:", 1)[-1]
        return since_start.count("accepting connections")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status (0 is the only clean answer)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self._log_sockets("at SIGTERM")
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"broker ignored SIGTERM for {STOP_TIMEOUT_S}s\n{self.log_tail()}"
                )
        return self.proc.returncode

    def stop_clean(self) -> None:
        code = self.stop()
        assert code == 0, f"broker exit status {code} after SIGTERM\n{self.log_tail()}"

    def _log_sockets(self, when: str) -> None:
        # Which client connections the broker still holds: a shutdown that waits out its drain
        # timeout is explained by this list.
        try:
            out = subprocess.run(
                ["ss", "-tanH", f"sport = :{self.port} or dport = :{self.port}"],
                capture_output=True, text=True, timeout=5,
            ).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            out = f"(ss failed: {e})\n"
        with open(self.log_path, "a") as log:
            log.write(f"===== sockets on port {self.port} {when}:\n{out}")

    def kill9(self) -> None:
        assert self.running(), "kill -9 of a broker that is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        assert self.proc.returncode == -signal.SIGKILL

    def restart(self) -> "Broker":
        """Start again on the same port and data directory (after stop or kill9)."""
        assert not self.running()
        return self.start()

    def log_tail(self, lines: int = LOG_TAIL_LINES_MAX) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        return f"--- tail of {self.log_path} ---\n" + "\n".join(text[-lines:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
    brokers = getattr(item, "spate_brokers", [])
    if report.failed and brokers:
        for broker in brokers:
            report.sections.append((f"spate log {broker.name}", broker.log_tail()))
        kept = "\n".join(f"{broker.name}: {broker.data_dir}" for broker in brokers)
        report.sections.append(("spate data dirs (kept because the test failed)", kept))


@pytest.fixture
def start_broker(request, tmp_path):
    """Factory: start_broker(cores=2, args=[...]) -> a running Broker (`data_dir`: a directory of
    the test's own, e.g. on a small filesystem; by default a fresh one under the data root)."""
    brokers: list[Broker] = []
    request.node.spate_brokers = brokers

    def start(cores: int = 2, args: list[str] | None = None, name: str | None = None,
              data_dir: Path | None = None) -> Broker:
        name = name or f"spate{len(brokers)}"
        broker = Broker(name, tmp_path, cores, args if args is not None else [], data_dir)
        brokers.append(broker)
        return broker.start()

    yield start

    failures = []
    for broker in brokers:
        if broker.running():
            code = broker.stop()
            if code != 0:
                failures.append(f"{broker.name} exited with {code} after SIGTERM\n{broker.log_tail()}")
    # Data dirs hold up to gigabytes: only a failed test's are kept (for debugging; the
    # failure report names them, see pytest_runtest_makereport), also when the failure is the
    # broker's exit status just checked. A skipped test counts as not failed.
    failed = bool(failures) or any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )
    if not failed and not os.environ.get("SPATE_KEEP_TEST_DATA"):
        for broker in brokers:
            shutil.rmtree(broker.data_dir, ignore_errors=True)
    assert not failures, "\n".join(
        failures + [f"data dir kept: {broker.data_dir}" for broker in brokers]
    )


@pytest.fixture
def broker(start_broker) -> Broker:
    """A two-core broker whose auto-created topics have 6 partitions."""
    return start_broker(cores=2, args=["--num-partitions", "6"])


# Measurements tests want printed at the end of the run (pytest -q hides test output).
E2E_METRICS: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if E2E_METRICS:
        terminalreporter.section("spate e2e measurements")
        for line in E2E_METRICS:
            terminalreporter.write_line(line)
