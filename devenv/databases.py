"""Real MariaDB and PostgreSQL servers on the loopback, for tests.

Each server is the Debian package's binaries (``mariadb-server``,
``postgresql``) run by hand: a data directory of its own made with
``mariadb-install-db`` / ``initdb``, a free port on 127.0.0.1 and a unix
socket in that directory, nothing shared with a system-wide instance.
They work as root and as an ordinary user: ``mariadbd`` runs as the
calling user (``--user=`` it), PostgreSQL refuses root, so under root it
runs as the ``postgres`` user (created by the Debian package) with its data
in a temporary directory that user owns.

The quickest way in, for a test that wants a database of its own::

    from devenv import databases

    server, url = databases.fresh_database("mariadb")   # or "postgresql"
    engine = sqlalchemy.create_engine(url)

:func:`fresh_database` starts one server per engine on first use (shared
by the whole test process, stopped at exit) and creates a new, empty
database on it each call.  Its URL is what an operator would write in
``[database]connection``: ``mysql+pymysql://inspectord:PASSWORD@127.0.0.1:PORT/NAME``
or ``postgresql+psycopg2://inspectord@127.0.0.1:PORT/NAME``.  A server of
one's own (to restart it, say) is a context manager::

    with databases.MariaDBServer(workdir) as server:
        url = server.create_database()
        server.restart()

Needs the drivers of the ``test`` extra (PyMySQL, psycopg2) to create
databases; :func:`unavailable` says why a server cannot run here.
"""

import atexit
import itertools
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from types import TracebackType

from devenv import processes

ENGINES = ("mariadb", "postgresql")
POSTGRESQL_BIN = pathlib.Path("/usr/lib/postgresql/15/bin")
USER = "inspectord"
# A test server on the loopback only: not a secret worth hiding.
PASSWORD = "inspectord-test"

_counter = itertools.count(1)


class DatabaseError(RuntimeError):
    """A database server could not be set up or started."""


def _is_root() -> bool:
    return os.geteuid() == 0


class _Server:
    """What both servers share: a process group in a data directory, a port."""

    engine = ""
    driver_module = ""

    def __init__(self, workdir: str | os.PathLike[str], port: int | None = None, host: str = "127.0.0.1"):
        self.workdir = pathlib.Path(workdir).absolute()
        self.host = host
        self.port = port
        self.log_path = self.workdir / f"{self.engine}.log"
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """Initialise the data directory the first time, start and wait until it accepts connections."""
        if self._process is not None:
            raise DatabaseError(f"{self.engine} is already running on port {self.port}")
        reason = unavailable(self.engine)
        if reason:
            raise DatabaseError(reason)
        deadline = time.monotonic() + timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = processes.free_port(self.host)
        elif not processes.port_is_free(self.host, self.port):
            raise DatabaseError(f"cannot start {self.engine}: {self.host} port {self.port} is in use")
        if not self._initialised():
            self._initialise(deadline)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                **self._run_as(),
            )
        try:
            self._wait_until_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period); its data stays.  Idempotent."""
        process, self._process = self._process, None
        if process is not None:
            processes.stop_process_group(process.pid, reap=process.poll)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; :meth:`start` recovers the data directory."""
        process, self._process = self._process, None
        if process is not None:
            processes.stop_process_group(process.pid, reap=process.poll, grace=0)

    def restart(self, timeout: float = 60) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop the server and remove what it wrote outside ``workdir``."""
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self):
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- databases ---------------------------------------------------------

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh name if none is given) that :data:`USER` owns; its URL."""
        name = name or f"inspectord_{os.getpid()}_{next(_counter)}"
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        self._create_database(name)
        return self.url(name)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` for :data:`USER`, as ``[database]connection`` takes it."""
        raise NotImplementedError

    def drop_connections(self) -> int:
        """Close every client connection of :data:`USER` on the server side, as an idle timeout does.

        Returns how many were closed.
        """
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------

    def _wait_until_ready(self, deadline: float) -> None:
        assert self._process is not None
        while True:
            if self._process.poll() is not None:
                raise DatabaseError(
                    f"{self.engine} exited with status {self._process.returncode} during start-up; "
                    f"end of {self.log_path}:\n{self._log_tail()}"
                )
            if self._accepts():
                return
            if time.monotonic() > deadline:
                raise DatabaseError(f"{self.engine} was not ready in time; end of {self.log_path}:\n{self._log_tail()}")
            time.sleep(0.1)

    def _accepts(self) -> bool:
        try:
            self._admin_query("SELECT 1")
        except Exception:  # the driver's own connection errors
            return False
        return True

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(no log: {error})"

    def _run_as(self) -> dict:
        return {}

    def _initialised(self) -> bool:
        raise NotImplementedError

    def _initialise(self, deadline: float) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _admin_query(self, *statements: str) -> list:
        raise NotImplementedError

    def _create_database(self, name: str) -> None:
        raise NotImplementedError


def _run(command: list[str], deadline: float, what: str, **kwargs) -> None:
    try:
        subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            timeout=max(deadline - time.monotonic(), 1),
            **kwargs,
        )
    except subprocess.CalledProcessError as error:
        output = (error.stdout + error.stderr).decode(errors="replace")
        raise DatabaseError(f"{what} failed:\n{output}") from None
    except subprocess.TimeoutExpired:
        raise DatabaseError(f"{what} did not finish in time") from None


class MariaDBServer(_Server):
    """``mariadbd`` with its data, socket, pid file and log in ``workdir``.

    The server's own defaults are kept (``--no-defaults``: no system
    ``my.cnf``), so the character set of new databases is the compiled-in
    one, as on many installed servers; the isolation level is MariaDB's
    default REPEATABLE READ.  Durability settings are relaxed for speed
    (they change nothing a client sees while the server runs).
    """

    engine = "mariadb"
    driver_module = "pymysql"

    @property
    def datadir(self) -> pathlib.Path:
        return self.workdir / "data"

    @property
    def socket_path(self) -> pathlib.Path:
        return self.workdir / "mysqld.sock"

    def url(self, database: str) -> str:
        return f"mysql+pymysql://{USER}:{PASSWORD}@{self.host}:{self.port}/{database}"

    def _user_option(self) -> str:
        return "--user=" + pwd.getpwuid(os.geteuid()).pw_name

    def _initialised(self) -> bool:
        return (self.datadir / "mysql").is_dir()

    def _initialise(self, deadline: float) -> None:
        _run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                self._user_option(),
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            deadline,
            "mariadb-install-db",
            cwd=self.workdir,
        )

    def _command(self) -> list[str]:
        return [
            "mariadbd",
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.workdir / 'mysqld.pid'}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            self._user_option(),
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=0",
            "--skip-innodb-doublewrite",
            "--max-connections=300",
        ]

    def _connect(self, **kwargs):
        import pymysql

        return pymysql.connect(unix_socket=str(self.socket_path), user="root", connect_timeout=2, **kwargs)

    def _admin_query(self, *statements: str) -> list:
        connection = self._connect(autocommit=True)
        try:
            rows: list = []
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                    rows = list(cursor.fetchall())
            return rows
        finally:
            connection.close()

    def _create_database(self, name: str) -> None:
        self._admin_query(
            f"CREATE DATABASE `{name}`",
            f"CREATE USER IF NOT EXISTS '{USER}'@'{self.host}' IDENTIFIED BY '{PASSWORD}'",
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{USER}'@'{self.host}'",
        )

    def drop_connections(self) -> int:
        ids = [row[0] for row in self._admin_query(
            f"SELECT id FROM information_schema.processlist WHERE user = '{USER}'"
        )]
        for connection_id in ids:
            try:
                self._admin_query(f"KILL CONNECTION {int(connection_id)}")
            except Exception:  # already gone
                pass
        return len(ids)


class PostgreSQLServer(_Server):
    """``postgres`` from ``/usr/lib/postgresql/15/bin`` with a cluster of its own.

    Superuser :data:`USER`, ``trust`` authentication on the loopback and the
    socket.  Under root the cluster lives in a temporary directory owned by
    the ``postgres`` user (PostgreSQL refuses to run as root), removed by
    :meth:`close`; otherwise in ``workdir/data``.
    """

    engine = "postgresql"
    driver_module = "psycopg2"

    def __init__(self, workdir: str | os.PathLike[str], port: int | None = None, host: str = "127.0.0.1"):
        super().__init__(workdir, port, host)
        self._private: pathlib.Path | None = None

    @property
    def datadir(self) -> pathlib.Path:
        if _is_root():
            if self._private is None:
                account = pwd.getpwnam("postgres")
                self._private = pathlib.Path(tempfile.mkdtemp(prefix="inspectord-pg-"))
                os.chown(self._private, account.pw_uid, account.pw_gid)
            return self._private / "data"
        return self.workdir / "data"

    @property
    def socket_dir(self) -> pathlib.Path:
        return self.datadir.parent

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{USER}@{self.host}:{self.port}/{database}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, not waited for), then as :meth:`_Server.stop`."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(processes.STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
        super().stop()

    def close(self) -> None:
        super().close()
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None

    def _run_as(self) -> dict:
        if not _is_root():
            return {}
        account = pwd.getpwnam("postgres")
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def _initialise(self, deadline: float) -> None:
        datadir = self.datadir  # (creates the private parent under root)
        _run(
            [
                str(POSTGRESQL_BIN / "initdb"),
                f"--pgdata={datadir}",
                f"--username={USER}",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            deadline,
            "initdb",
            cwd=datadir.parent,
            **self._run_as(),
        )

    def _command(self) -> list[str]:
        return [
            str(POSTGRESQL_BIN / "postgres"),
            "-D", str(self.datadir),
            "-h", self.host,
            "-p", str(self.port),
            "-k", str(self.socket_dir),
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=300",
        ]

    def _connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host=str(self.socket_dir), port=self.port, user=USER, dbname=database, connect_timeout=2)

    def _admin_query(self, *statements: str) -> list:
        connection = self._connect()
        connection.autocommit = True
        try:
            rows: list = []
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                    rows = list(cursor.fetchall()) if cursor.description else []
            return rows
        finally:
            connection.close()

    def _create_database(self, name: str) -> None:
        self._admin_query(f'CREATE DATABASE "{name}"')

    def drop_connections(self) -> int:
        rows = self._admin_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE usename = current_user AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return len(rows)


SERVERS = {"mariadb": MariaDBServer, "postgresql": PostgreSQLServer}


def unavailable(engine: str) -> str | None:
    """Why a server of ``engine`` cannot run here, or None if it can."""
    if engine == "mariadb":
        binaries = ["mariadbd", "mariadb-install-db"]
        package = "Debian mariadb-server"
    elif engine == "postgresql":
        binaries = [str(POSTGRESQL_BIN / "postgres"), str(POSTGRESQL_BIN / "initdb")]
        package = "Debian postgresql (15)"
    else:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        return f"{package} is not installed (no {', '.join(missing)}): run tools/bootstrap as root"
    if engine == "postgresql" and _is_root():
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run PostgreSQL as"
    module = SERVERS[engine].driver_module
    try:
        __import__(module)
    except ImportError:
        return f"the {module} driver is not installed: pip install -e '.[test]'"
    return None


def start_server(engine: str, workdir: str | os.PathLike[str] | None = None, timeout: float = 60) -> _Server:
    """A started server of ``engine`` in ``workdir`` (a new temporary directory if None)."""
    if workdir is None:
        workdir = tempfile.mkdtemp(prefix=f"inspectord-{engine}-")
    server = SERVERS[engine](workdir)
    server.start(timeout)
    return server


_shared: dict[str, _Server] = {}


def shared_server(engine: str) -> _Server:
    """The test process's server of ``engine``, started on first use and stopped at exit."""
    server = _shared.get(engine)
    if server is None:
        workdir = tempfile.mkdtemp(prefix=f"inspectord-{engine}-")
        server = start_server(engine, workdir)
        _shared[engine] = server

        def shutdown():
            server.close()
            if not os.environ.get("INSPECTORD_KEEP_WORKDIR"):
                shutil.rmtree(workdir, ignore_errors=True)

        atexit.register(shutdown)
    return server


def fresh_database(engine: str) -> tuple[_Server, str]:
    """``(server, url)``: the shared server of ``engine`` and the URL of a new, empty database on it."""
    server = shared_server(engine)
    return server, server.create_database()
