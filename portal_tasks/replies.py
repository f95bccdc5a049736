"""What the host-side helper answers, as the laptop reads it: one TypedDict per reply (JSON objects).

The helper (``remote/``, stdlib only, the host's own Python) writes these; it does not import this
module. Keys a reply may lack (older helpers, or only in some cases) are ``NotRequired``.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Facts(TypedDict):
    """``probe`` (and a snapshot's ``facts``): who the user is on the host and which tools it has."""

    uid: int
    user: str
    home: str
    hostname: str
    python: str
    python_path: NotRequired[str]  # the Python running the helper
    tmux: str | None
    manager: Manager | None
    shell: str
    zdotdir: NotRequired[str | None]  # ZDOTDIR for the windows of a zsh user with no startup files
    cpus: int | None
    memory: int | None
    listeners: NotRequired[list[dict[str, Any]]]


class Dashboard(TypedDict, total=False):
    """The env's bokeh as Dask's dashboard needs it."""

    need: str
    have: str | None
    ok: bool


class Manager(TypedDict):
    """conda, mamba or micromamba as the host's helper found it: which, where, and from what."""

    kind: str
    path: str
    source: str
    root: str


class EnvCheck(TypedDict):
    """``env-check``: what an env is on the host."""

    kind: str  # "named" | "venv" | "conda-prefix"
    prefix: str
    python: str
    version: str
    manager: str | None
    manager_path: NotRequired[str | None]
    manager_source: NotRequired[str | None]
    shell: NotRequired[str]  # the shell of the user's tmux windows
    loaded: NotRequired[list[str]]  # the environment modules loaded before the env was looked at
    module_init: NotRequired[str | None]  # the module system's init file a fish window reads first
    modules: dict[str, bool]
    versions: NotRequired[dict[str, str]]  # jupyter_server, jupyter-server-proxy: what portal decides by
    dashboard: NotRequired[Dashboard | None]


class EnvInfo(EnvCheck):
    """An ``env-check`` reply with the spec it was asked for (``name``)."""

    name: str


class Window(TypedDict):
    """A window of the session in a snapshot: its foreground command and portal's marker."""

    command: str
    marker: str


class ClusterState(TypedDict, total=False):
    """A recorded cluster with its health: a ``cluster-list`` entry, or the state `up`'s cluster part reports
    (reused, or started and waited for: ``cluster-starting`` and ``cluster-ready``)."""

    key: str
    env: str
    address: str
    scheduler_host: str | None
    scheduler_pid: int | None
    workers_pid: int | None
    workers_pids: list[int]  # one `dask worker` process per worker (absent in records of earlier versions)
    scheduler_port: int
    dashboard_port: int
    planned_dashboard_port: int
    worker_ports: list[int]
    nanny_ports: list[int]
    http_ports: list[int]  # the workers' HTTP range (absent: planned by an earlier portal)
    http: list[int]  # each worker's HTTP port
    block: Block
    outside_block: list[str]  # ADDR:PORT its processes listen on outside the user's block
    workers: int
    threads: int
    memory_limit: int
    memory_budget: int
    workers_running: int
    healthy: bool
    dashboard_ok: bool
    dashboard_unowned: str | None
    dashboard_open: bool  # its dashboard answers anyone on the server (started without portal's preload)
    dashboard_problem: str | None
    workers_on: list[str]
    hostname: str
    notes: list[str]
    jobs: list[dict[str, Any]]  # worker jobs on the batch system: id, name, state, reason, workers joined


class Share(TypedDict, total=False):
    """The budget the host registered for a new cluster."""

    memory: int
    cores: int
    trusted: bool


class Block(TypedDict):
    """The user's port block on the host."""

    index: int
    start: int
    end: int


class ClusterEntry(TypedDict):
    """A cluster as `status --json` shows it (made on the laptop from a :class:`ClusterState`)."""

    env: str
    env_key: str
    address: str | None
    scheduler_port: int
    dashboard_port: int
    workers: int
    workers_running: int
    threads: int
    memory_budget: int
    memory_limit: int
    pid: int | None
    workers_pid: int | None
    healthy: bool
    window: str
    dashboard_problem: str | None
    dashboard_ok: bool
    dashboard_unowned: str | None
    dashboard_open: bool  # its dashboard answers anyone on the server (started without portal's preload)
    scheduler_host: str
    workers_on: list[str]
    jobs: list[dict[str, Any]]
    outside_block: list[str]


class JupyterState(TypedDict, total=False):
    """A recorded Jupyter server: ``jupyter-status``, ``jupyter-wait``, ``jupyter-list`` entries,
    ``jupyter-prepare``; ``taken`` (and no health) when another program holds its port."""

    env: str
    env_key: str
    port: int | None
    socket: str | None
    token: str
    token_file: str
    url_path: str
    url: str
    dir: str
    config_dir: str | None
    status: int | None
    healthy: bool
    problem: str | None
    pid: int | None
    taken: str


class PortsReport(TypedDict):
    """``ports-report``: the recorded plan (``envs``: env key -> its ports) and the user's listeners."""

    uid: int
    block: Block
    claimed: bool
    envs: dict[str, dict[str, Any]]
    listening: list[dict[str, Any]]
    would_be: NotRequired[dict[str, Any] | None]


class Failed(TypedDict):
    """An error the helper reported inside a reply: its message, its PortalError class's name, the hint."""

    message: str
    kind: str
    hint: str | None


class Snapshot(TypedDict):
    """``snapshot``: everything warm `up` needs in one answer. ``windows`` is None without the session;
    ``env`` None (with ``env_error``) when the env check failed."""

    facts: Facts
    env: EnvCheck | None
    env_error: NotRequired[str]
    env_failure: NotRequired[Failed]  # the env check's error as the helper raised it
    windows: dict[str, Window] | None
    clusters: list[ClusterState]
    jupyters: list[JupyterState]
    ports: NotRequired[PortsReport]  # these three when the snapshot was asked with the port plan
    share: NotRequired[dict[str, Any]]
    tls: NotRequired[dict[str, Any]]
    interface: NotRequired[dict[str, Any]]  # {address} of scheduler_interface, or a Failed, when asked


class WorkersOn(TypedDict):
    """A cluster with workers on other servers (the laptop stops those: it reaches them)."""

    env: str
    env_key: str
    workers_on: list[str]


class DownCluster(WorkersOn):
    """A cluster ``down`` stopped that had workers on other servers; ``at``: where their words go in ``stopped``."""

    at: int


class Survivors(TypedDict):
    """A cluster's processes that did not end (``down`` touched nothing after them)."""

    env: str
    env_key: str
    pids: list[int]


class Down(TypedDict):
    """``down``: what went, in the words `down` prints, and what is left for the laptop to do."""

    stopped: list[str]
    clusters: list[DownCluster]
    survivors: Survivors | None
    facts: NotRequired[Facts]  # with ``clusters``: the server's probe, for the other servers' workers
