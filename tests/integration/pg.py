"""A real PostgreSQL 15 server for the tests: initdb into a temporary
folder, postgres on 127.0.0.1 and a free port, as an unprivileged user
(postgres refuses to run as root), stopped by its pid.

As a module:
    srv = pg.Server()            # started; srv.stop() (also at exit)
    uri = srv.createdb()         # a fresh database: postgresql://kairan@…
    srv.password_file            # the password of user kairan, 0600
    srv.psql(dbname, sql)        # runs SQL as the superuser, returns stdout
    srv.restart() / srv.stop_server() / srv.start_server()

From the shell (tests/run_tests.sh):
    pg.py start DIR   prints "URI PASSWORD_FILE PID" of a server in DIR
    pg.py stop DIR    stops it by the pid in DIR/postmaster.pid

Clients authenticate with a SCRAM password over TCP; the superuser
("postgres") uses the Unix socket in the data folder without one.
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("KAIRAN_PG_BIN", "/usr/lib/postgresql/15/bin")
USER = "nobody"  # runs the server when we are root
PASSWORD = "kairan-test-secret"


def available():
    return os.access(os.path.join(BIN, "postgres"), os.X_OK)


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _as_user(argv):
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=%s" % USER, "--regid=nogroup",
            "--clear-groups", "--"] + argv


class Server:
    def __init__(self, base=None, start=True):
        # the server's user must reach it: not below a 0700 folder
        self.base = base or tempfile.mkdtemp(prefix="kairan-pg-")
        os.makedirs(self.base, exist_ok=True)
        os.chmod(self.base, 0o755)
        self.data = os.path.join(self.base, "data")
        self.sock = os.path.join(self.base, "sock")
        self.log = os.path.join(self.base, "postgres.log")
        self.password_file = os.path.join(self.base, "password")
        self.port = None
        self.pid = None
        self._n = 0
        if start:
            self.init()
            self.start_server()
            import atexit
            atexit.register(self.stop)

    def _own(self, path):
        if os.geteuid() == 0:
            pw = pwd.getpwnam(USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def init(self):
        os.makedirs(self.sock, exist_ok=True)
        self._own(self.sock)
        os.makedirs(self.data, mode=0o700, exist_ok=True)
        self._own(self.data)
        pwfile = os.path.join(self.base, "superpw")
        with open(pwfile, "w") as f:
            f.write("unused-superuser-password\n")
        os.chmod(pwfile, 0o644)
        with open(self.password_file, "w") as f:
            f.write(PASSWORD + "\n")
        os.chmod(self.password_file, 0o600)  # kairan refuses others
        subprocess.run(_as_user([
            os.path.join(BIN, "initdb"), "-D", self.data, "-U", "postgres",
            "--pwfile", pwfile, "--auth-local=trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            "--no-sync"]), check=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, cwd="/")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("fsync = off\nsynchronous_commit = off\n"
                    "full_page_writes = off\nmax_connections = 200\n"
                    "shared_buffers = 64MB\n")

    def start_server(self, port=None):
        self.port = port or self.port or _free_port()
        logf = open(self.log, "ab")
        self._own(self.log)
        self.proc = subprocess.Popen(_as_user([
            os.path.join(BIN, "postgres"), "-D", self.data,
            "-h", "127.0.0.1", "-p", str(self.port), "-k", self.sock]),
            stdout=logf, stderr=logf, cwd="/", start_new_session=True)
        self.pid = self.proc.pid
        end = time.time() + 30
        while time.time() < end:
            r = subprocess.run(
                [os.path.join(BIN, "pg_isready"), "-h", "127.0.0.1", "-p",
                 str(self.port), "-q"])
            if r.returncode == 0:
                break
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited: " + self.logtext())
            time.sleep(0.1)
        else:
            raise RuntimeError("postgres did not start: " + self.logtext())
        if not getattr(self, "_role", False):
            self.psql("postgres", "CREATE ROLE kairan LOGIN CREATEDB "
                      "PASSWORD '%s'" % PASSWORD)
            self._role = True

    def logtext(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def psql(self, dbname, sql, check=True):
        r = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", self.sock, "-p", str(self.port), "-U", "postgres",
             "-d", dbname, "-c", sql], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError("psql: %s: %s" % (sql[:80], r.stderr))
        return r.stdout

    def uri(self, dbname):
        return "postgresql://kairan@127.0.0.1:%d/%s" % (self.port, dbname)

    def createdb(self, name=None):
        self._n += 1
        name = name or "kairan_%d_%d" % (os.getpid(), self._n)
        self.psql("postgres", "CREATE DATABASE %s OWNER kairan" % name)
        return self.uri(name)

    def stop_server(self, sig=signal.SIGINT, timeout=30):
        """Stops postgres by its pid (SIGINT: fast shutdown)."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait()
        self.pid = None

    def restart(self):
        self.stop_server()
        self.start_server(self.port)

    def stop(self):
        self.stop_server()
        if not os.environ.get("KAIRAN_KEEP"):
            shutil.rmtree(self.base, True)


def _pid_of(base):
    with open(os.path.join(base, "data", "postmaster.pid")) as f:
        return int(f.readline())


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: pg.py start|stop DIR")
    base = sys.argv[2]
    if sys.argv[1] == "start":
        os.makedirs(base, exist_ok=True)
        srv = Server(base, start=False)
        srv.init()
        srv.start_server()
        # the server outlives this script: run_tests.sh stops it by pid
        print(srv.uri("postgres"), srv.password_file, srv.pid)
        os._exit(0)
    try:
        pid = _pid_of(base)
        os.kill(pid, signal.SIGINT)
        for _ in range(300):
            os.kill(pid, 0)
            time.sleep(0.1)
    except (OSError, ValueError):
        pass
    shutil.rmtree(base, True)
