"""A real IMAP server for the local stack and the tests: Debian's Dovecot from a throwaway config.

    with DovecotServer(special_use_sent="Sent") as imap:
        imap.add_user("anna@example.com", "secret")
        ...connect to imap.host, imap.port (plain/STARTTLS) or imap.ssl_port (implicit TLS)...

Everything lives in one folder: the config, a passwd-file per user with a {PLAIN} password,
the maildirs, Dovecot's run and state folders and its log. It listens on 127.0.0.1 only, on
free ports. Users can be added while it runs and log in at once.

`special_use_sent="Sent"` (the default) gives every user a folder of that name marked `\\Sent`
(RFC 6154); with None the server has no SPECIAL-USE folder at all, as many hosts do.
`folders` lists folders created for every user on first login (Dovecot encodes their names
itself). With a TLS
certificate (`tls_cert_pem`, `tls_key_pem`), STARTTLS is offered on `port` and implicit TLS
served on `ssl_port`.

Run as root, Dovecot's login processes run as `dovenull` and mail is owned by `dovecot`, as
Debian sets them up; run as another user, every process runs as that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
_CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")


def dovecot_binary() -> str | None:
    """Where Dovecot is installed, or None."""
    found = shutil.which("dovecot")
    if found:
        return found
    return next((path for path in _CANDIDATES if os.access(path, os.X_OK)), None)


def unavailable_reason() -> str | None:
    """Why a Dovecot server cannot run here, or None when it can."""
    if dovecot_binary() is None:
        return "Dovecot is not installed (Debian: apt-get install dovecot-imapd; `make test` does it as root)"
    if os.geteuid() == 0:
        for user in ("dovecot", "dovenull"):
            try:
                pwd.getpwnam(user)
            except KeyError:
                return f"the system user {user!r} that Dovecot runs as is missing"
    return None


# Stops the Dovecot master when the process that started it goes away without stopping it
# (a test run killed or interrupted): it waits for its stdin, a pipe from that process, to close.
_WATCHDOG = """
import os, signal, sys
sys.stdin.buffer.read()
try:
    os.kill(int(sys.argv[1]), signal.SIGTERM)
except (ProcessLookupError, PermissionError):
    pass
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child of ours that exited but was not reaped yet is a zombie: gone for our purposes.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _quote_folder(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class DovecotServer:
    directory: Path | None = None  # None: a fresh folder under the system's temp dir, removed at stop
    special_use_sent: str | None = "Sent"  # the folder marked \\Sent; None: no SPECIAL-USE folder
    folders: tuple[str, ...] = ()
    tls_cert_pem: str | None = None  # certificate chain (PEM) for STARTTLS and implicit TLS
    tls_key_pem: str | None = field(default=None, repr=False)
    start_timeout: float = 15.0
    host: str = HOST
    port: int = 0
    ssl_port: int | None = None
    users: dict[str, str] = field(default_factory=dict)
    _master_pid: int | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ config
    _owns_directory: bool = field(default=False, repr=False)
    _watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        if self.directory is None:
            raise RuntimeError("the server has not started")
        return self.directory

    @property
    def config_path(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def passwd_dir(self) -> Path:
        return self.root / "users"

    def _accounts(self) -> tuple[str, str, str, str]:
        """(login user, internal user, mail uid, mail gid) for this process's privileges."""
        if os.geteuid() == 0:
            return "dovenull", "dovecot", "dovecot", "dovecot"
        me = pwd.getpwuid(os.geteuid()).pw_name
        return me, me, str(os.geteuid()), str(os.getegid())

    def _config(self) -> str:
        d = self.root
        login_user, internal_user, uid, gid = self._accounts()
        mailboxes = []
        if self.special_use_sent:
            name = _quote_folder(self.special_use_sent)
            mailboxes.append(f"  mailbox {name} {{\n    special_use = \\Sent\n    auto = subscribe\n  }}")
        for name in self.folders:
            mailboxes.append(f"  mailbox {_quote_folder(name)} {{\n    auto = subscribe\n  }}")
        tls = "ssl = no\n"
        listeners = f"  inet_listener imap {{\n    address = {self.host}\n    port = {self.port}\n  }}\n"
        if self.tls_cert_pem and self.tls_key_pem:
            tls = f"ssl = yes\nssl_cert = <{d}/tls/cert.pem\nssl_key = <{d}/tls/key.pem\n"
            listeners += (
                f"  inet_listener imaps {{\n    address = {self.host}\n    port = {self.ssl_port}\n"
                "    ssl = yes\n  }\n"
            )
        else:
            listeners += "  inet_listener imaps {\n    port = 0\n  }\n"
        return f"""# Written by devstack/imap_server.py: a throwaway Dovecot for tests and the local stack.
base_dir = {d}/run
state_dir = {d}/state
log_path = {self.log_path}
info_log_path = {self.log_path}
protocols = imap
listen = {self.host}
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = 1
first_valid_gid = 1
disable_plaintext_auth = no
auth_mechanisms = plain login
# No delay after a wrong password: tests try them on purpose.
auth_failure_delay = 0
{tls}mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  # One passwd-file per user: Dovecot reads a file it has not seen at once, but looks at a
  # file it knows for changes at most once a second.
  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
{chr(10).join(mailboxes)}
}}
service imap-login {{
{listeners}}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  # Without this socket the auth process keeps no penalty for failed logins from 127.0.0.1,
  # which would otherwise make every later login of the tests wait seconds.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""

    def _write_user(self, login: str) -> None:
        path = self.passwd_dir / login
        tmp = path.with_name(f".{login}.tmp")
        tmp.write_text(f"{login}:{{PLAIN}}{self.users[login]}::::::\n", encoding="utf-8")
        tmp.replace(path)  # Dovecot never sees a half-written file

    def add_user(self, login: str, password: str) -> None:
        """A user who can log in from now on.

        A new user can log in at once; a changed password is seen by Dovecot within a second.
        Logins may not hold '/', ':' or line breaks, passwords no ':' or line breaks.
        """
        if any(c in login + password for c in ":\n\r") or "/" in login or login.startswith("."):
            raise ValueError("a login or password of the test server holds a character it cannot store")
        self.users[login] = password
        if self.directory is not None and self.passwd_dir.is_dir():
            self._write_user(login)

    # ------------------------------------------------------------------ lifecycle
    # Many branches on purpose: Dovecot found, configured and started, step by step.
    def start(self) -> DovecotServer:  # noqa: C901
        binary = dovecot_binary()
        reason = unavailable_reason()
        if binary is None or reason:
            raise RuntimeError(reason or "Dovecot is not installed")
        if self.directory is None:
            # Dovecot's users must be able to reach the folder: pytest's tmp_path is private.
            self.directory = Path(tempfile.mkdtemp(prefix="mailer-dovecot-"))
            self._owns_directory = True
        self.directory.mkdir(parents=True, exist_ok=True)
        for sub in ("run", "state", "mail", "home"):
            (self.directory / sub).mkdir(exist_ok=True)
        self.port = self.port or _free_port()
        if self.tls_cert_pem and self.tls_key_pem:
            self.ssl_port = self.ssl_port or _free_port()
            tls_dir = self.root / "tls"
            tls_dir.mkdir(mode=0o700, exist_ok=True)
            for name, pem in (("cert.pem", self.tls_cert_pem), ("key.pem", self.tls_key_pem)):
                (tls_dir / name).write_text(pem, encoding="ascii")
                (tls_dir / name).chmod(0o600)
        _, _, uid, gid = self._accounts()
        if os.geteuid() == 0:
            # The mail and the homes belong to the user Dovecot delivers as.
            for sub in ("mail", "home"):
                shutil.chown(self.root / sub, user=uid, group=gid)
            self.root.chmod(0o755)
        self.passwd_dir.mkdir(exist_ok=True)
        self.passwd_dir.chmod(0o755)
        for login in self.users:
            self._write_user(login)
        self.config_path.write_text(self._config(), encoding="utf-8")
        # Dovecot forks into the background; its children inherit no pipe of ours to wait on.
        errors = self.root / "start.err"
        with errors.open("wb") as err:
            code = subprocess.call(
                [binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                timeout=30,
            )
        if code != 0:
            raise RuntimeError(f"Dovecot did not start: {errors.read_text(errors='replace').strip()}")
        self._wait_until_listening()
        pid_file = self.root / "run" / "master.pid"
        deadline = time.monotonic() + 5
        while self._master_pid is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                self._master_pid = int(pid_file.read_text().strip())
            if self._master_pid is None:
                time.sleep(0.02)
        if self._master_pid is None:
            subprocess.call(  # Dovecot finds its master itself
                [binary, "-c", str(self.config_path), "stop"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
            )
            self.stop()
            raise RuntimeError(f"Dovecot wrote no {pid_file}")
        if self._master_pid is not None:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(self._master_pid)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C of the test run does not end it before its work
            )
        return self

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
                self.stop()
                raise RuntimeError(f"Dovecot did not answer on {self.host}:{self.port} in time. Log:\n{log}")
            time.sleep(0.05)

    def stop(self, *, wait: bool = True) -> None:
        """Stop the master process this server started (its children follow it).

        Dovecot's log process lingers a couple of seconds after the master was told to stop;
        `wait=False` does not wait for that (the ports are closed at once either way).
        """
        pid = self._master_pid
        self._master_pid = None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if self._watchdog is not None:
            assert self._watchdog.stdin is not None
            self._watchdog.stdin.close()  # the watchdog signals the (stopped) master and ends
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(timeout=5)
            self._watchdog = None
        if pid is not None and wait:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.02)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self._owns_directory and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            self._owns_directory = False

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
