"""The daemon's configuration: one YAML file, validated strictly.

Every error names the file, the line and the key (see ``monitor.yamlfile``).
``${VAR}`` in any string is read from the environment (or the config's
``env_file``); the values read that way are secrets and are handed to the log
redaction filter, never printed.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.logs import public_url, url_secrets
from monitor.yamlfile import (
    ConfigError,
    ConfigErrors,
    YamlDocument,
    load_yaml_file,
    locate,
    to_plain,
    validation_errors,
)

DEFAULT_CONFIG = Path("config/newsmon.yaml")
ENV_CONFIG = "NEWSMON_CONFIG"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> float:
    """``90``, ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m, 2h or 1d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"{value!r} is not a duration such as 30s, 10m, 2h or 1d")


Duration = Annotated[float, BeforeValidator(parse_duration)]
Severity = Literal["low", "normal", "high", "critical"]
SEVERITY_RANK: dict[str, int] = {"low": 0, "normal": 1, "high": 2, "critical": 3}


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value, re.I):
        raise ValueError("must be an http:// or https:// URL")
    return value


class FeedConfig(StrictModel):
    """One feed to poll."""

    url: str
    name: str | None = None
    interval: Duration | None = None  # None: fetch.default_interval
    tags: tuple[str, ...] = ()
    enabled: StrictBool = True
    # Lets this feed's own URL reach a private address (an intranet feed).
    # Links found inside the feed never get this.
    allow_private: StrictBool = False
    headers: dict[str, str] = Field(default_factory=dict)
    cookies: dict[str, str] = Field(default_factory=dict)
    proxy: str | None = None
    max_items: int | None = Field(default=None, ge=1)
    fetch_articles: StrictBool | None = None  # None: fetch.fetch_articles
    backlog_as_seen: StrictBool | None = None  # None: fetch.backlog_as_seen
    # Per-feed floor and ceiling of the poll interval (None: fetch.min/max_interval).
    min_interval: Duration | None = None
    max_interval: Duration | None = None

    _check_url = field_validator("url")(classmethod(lambda cls, v: _http_url(v)))

    @property
    def label(self) -> str:
        # Without a name, host and path only: a query or userinfo may hold a token.
        return self.name or public_url(self.url)


class ChannelConfig(StrictModel):
    """Where alerts go: any apprise URL."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    # An apprise URL; usually ${VAR} so the secret stays out of the file. Never in a repr.
    url: str = Field(repr=False)
    topics: tuple[str, ...] | None = None  # None: every topic
    min_severity: Severity = "low"
    admin: StrictBool = False  # daemon-health messages go to admin channels
    # How messages are written (docs/delivery.md). auto: the service's own format
    # (Slack mrkdwn, email HTML with a text part, Telegram HTML, else plain text).
    format: Literal["auto", "text", "markdown", "html"] = "auto"
    title_template: str | None = None  # Jinja2 (sandboxed); None: the default template
    body_template: str | None = None
    digest_template: str | None = None
    max_length: int | None = Field(default=None, ge=200)  # None: the service's own limit
    # When alerts go out: "immediate", "hourly", or "daily at HH:MM" (in ``timezone``).
    digest: str = "immediate"
    timezone: str = "UTC"  # an IANA name (Europe/Berlin) for digests and quiet hours
    quiet_hours: str | None = None  # "22:00-07:00": held, then sent as one digest
    quiet_bypass: Severity | None = "critical"  # this severity and above pass quiet hours
    # More than ``throttle`` alerts within ``throttle_window``: the rest of the
    # window collapses into one digest. None: no throttle (admin channels: the
    # delivery.admin_throttle default).
    throttle: int | None = Field(default=None, ge=1)
    throttle_window: Duration = 3600.0
    rate_limit: Duration = 1.0  # at least this long between two messages to the channel

    @field_validator("digest")
    @classmethod
    def _check_digest(cls, value: str) -> str:
        value = " ".join(value.lower().split())
        m = re.fullmatch(r"immediate|hourly|daily at (\d{1,2}):(\d{2})", value)
        if not m or (m.group(1) and (int(m.group(1)) > 23 or int(m.group(2)) > 59)):
            raise ValueError("must be immediate, hourly, or daily at HH:MM (e.g. daily at 08:00)")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet(cls, value: str | None) -> str | None:
        if value is None:
            return None
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", value)
        if not m or int(m.group(1)) > 23 or int(m.group(3)) > 23 or int(m.group(2)) > 59 \
                or int(m.group(4)) > 59 or m.group(1, 2) == m.group(3, 4):
            raise ValueError("must be a time range such as 22:00-07:00")
        return f"{int(m.group(1)):02d}:{m.group(2)}-{int(m.group(3)):02d}:{m.group(4)}"

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as"
                             " Europe/Berlin)") from None
        return value


class FetchSettings(StrictModel):
    user_agent: str = "newsmon/0.1 (news monitor; +https://github.com/newsmon/newsmon)"
    timeout: Duration = 30.0  # total, per request: connect + headers + body
    max_feed_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_page_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    concurrency: int = Field(default=20, ge=1, le=500)
    per_host: int = Field(default=4, ge=1, le=100)
    default_interval: Duration = 600.0
    min_interval: Duration = 60.0
    max_interval: Duration = 6 * 3600.0
    max_items_per_poll: int = Field(default=200, ge=1)
    fetch_articles: StrictBool = True
    # A feed's first poll: its items are stored and matched, and taken as seen without
    # alerting (the backlog of a feed just added; ``identity.plan_item(first_poll=...)``).
    backlog_as_seen: StrictBool = True
    # Operator allow-list of networks that may be reached although not public
    # (e.g. ["127.0.0.0/8"] for a local test or an intranet). Applies to all requests.
    allow_networks: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] | None = None
    # Polling policy (monitor/ingest/cadence.py, docs/feeds.md).
    adaptive: StrictBool = True  # interval from each feed's rate of new items
    backoff_base: Duration = 120.0  # first retry after an error; doubles per failure
    backoff_max: Duration = 6 * 3600.0  # errors never wait longer (the feed is never dropped)
    retry_after_max: Duration = 6 * 3600.0  # a server's Retry-After is honoured up to this
    # Network down: network errors from this many hosts within the window, and no success.
    outage_window: Duration = 120.0
    outage_hosts: int = Field(default=3, ge=2)
    # Feed health notices on the admin channels (one when it starts, one on recovery).
    failing_notice_after: Duration = 6 * 3600.0  # a feed failing for longer than this
    quiet_factor: float = Field(default=5.0, ge=1.0)  # silent for 5x its usual gap...
    quiet_min: Duration = 86_400.0  # ...and at least this long
    # GUID-churn circuit breaker: more than churn_ratio of a feed's items "new" on
    # churn_polls consecutive polls (of at least churn_min_items items) holds its alerts.
    churn_ratio: float = Field(default=0.8, gt=0.0, le=1.0)
    churn_polls: int = Field(default=3, ge=1)
    churn_min_items: int = Field(default=5, ge=1)


class AnalysisSettings(StrictModel):
    # A trained spaCy pipeline such as "en_core_web_sm", used when installed (adds NER).
    spacy_model: str | None = None
    workers: int | None = Field(default=None, ge=0)  # None: one per core; 0: in-process


class BurstSettings(StrictModel):
    """Burst detection of ``delivery.per_story`` (``monitor.stories.bursts``)."""

    enabled: StrictBool = True
    window: Duration = Field(default=3600.0, gt=0)  # "articles in the last hour"
    baseline: Duration = Field(default=86400.0, gt=0)  # the span before it the baseline rate is taken over
    factor: float = Field(default=4.0, ge=1.0)
    min_articles: int = Field(default=6, ge=2)
    min_history: Duration = Field(default=6 * 3600.0, ge=0)  # younger stories/topics have no baseline


class DeliverySettings(StrictModel):
    interval: Duration = 30.0  # how often the delivery job runs
    batch: int = Field(default=50, ge=1)
    max_attempts: int = Field(default=10, ge=1)
    retry_base: Duration = 30.0
    retry_max: Duration = 3600.0
    timeout: Duration = 30.0  # per send, all included (a hung or slow-dripping endpoint)
    retry_after_max: Duration = 6 * 3600.0  # a service's Retry-After is honoured up to this
    max_age: Duration = 2 * 86400.0  # an alert still failing this long after it was queued dies
    # More than this many alerts due at once on a channel (a backlog after an
    # outage) go out as one digest instead of a storm.
    collapse_over: int = Field(default=10, ge=1)
    # Admin channels without their own ``throttle``: at most this many messages a window.
    admin_throttle: int = Field(default=5, ge=1)
    admin_window: Duration = 3600.0
    run_budget: Duration = 60.0  # one delivery run stops starting new sends after this
    # A channel failing every send for longer than this makes ``status`` unhealthy and
    # raises one notice on the other admin channels (and one when it recovers).
    channel_failing_after: Duration = Field(default=600.0, gt=0)
    # One alert per story per channel: the articles of one event, across feeds and
    # outlets, alert once; a later one only with a topic new to the story. false: per article.
    per_story: StrictBool = True
    # With per_story: one follow-up also when a story has this many more outlets.
    follow_up_outlets: int | None = Field(default=None, ge=1)
    # With per_story: what else makes a follow-up: a topic new to the story, a new number or
    # named actor in the evidence, a burst of the story or its topic (docs/stories.md).
    follow_up_on: list[Literal["topic", "facts", "burst"]] = ["topic", "burst"]
    # A story or topic with bursts.factor × its baseline rate in the last bursts.window (and at
    # least bursts.min_articles) is escalated one severity step; the message says so.
    bursts: BurstSettings = BurstSettings()


class ServiceHttpSettings(StrictModel):
    """The optional ``/healthz`` + ``/metrics`` listener (off unless enabled)."""

    enabled: StrictBool = False
    host: str = "127.0.0.1"  # loopback: put a reverse proxy in front to expose it
    port: int = Field(default=9464, ge=0, le=65535)


class ServiceSettings(StrictModel):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    # SIGTERM: in-flight polls get this long to finish, then are cancelled (left unseen).
    stop_timeout: Duration = Field(default=5.0, gt=0)
    # A poll running longer than this counts as wedged: the watchdog stops being fed.
    poll_stall_timeout: Duration = Field(default=900.0, gt=0)
    # Article bodies older than this are pruned (matches, evidence, alerts stay). None: keep.
    body_retention: Duration | None = 400 * 86400.0  # a year of history for search and backtest
    # Finished cycle rows older than this are deleted.
    cycle_retention: Duration = 90 * 86400.0
    # How often retention and database optimisation run.
    maintenance_interval: Duration = Field(default=6 * 3600.0, gt=0)
    http: ServiceHttpSettings = ServiceHttpSettings()


# --- database: a SQLite file (the default) or a PostgreSQL URL -----------------------------
DATABASE_PASSWORD_ENV = "NEWSMON_DATABASE_PASSWORD"  # else libpq's PGPASSWORD or ~/.pgpass
_PG_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(value: object) -> bool:
    """Whether ``value`` is a ``postgresql://`` (or ``postgres://``) URL."""
    return isinstance(value, str) and "://" in value \
        and value.split("://", 1)[0].lower() in _PG_SCHEMES


def _database_value(value: Any) -> Any:
    """``database:``: a ``postgresql://user@host:port/name`` URL is kept as text (checked
    here), anything else is a SQLite file path. The messages never repeat the URL, and a
    password in it is refused: the config file is no place for one."""
    if not isinstance(value, str) or "://" not in value:
        return Path(value) if isinstance(value, str) else value
    if not is_postgres_url(value):
        raise ValueError("a database URL must start with postgresql:// (or postgres://);"
                         " anything else is a SQLite file path")
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise ValueError("the port in the PostgreSQL URL is not a number") from None
    if parts.password is not None or "password" in parse_qs(parts.query):
        raise ValueError(f"the PostgreSQL URL holds a password: remove it and set {DATABASE_PASSWORD_ENV}"
                         " (or PGPASSWORD, or ~/.pgpass) in the daemon's environment instead")
    if not parts.path.strip("/"):
        raise ValueError("the PostgreSQL URL names no database: postgresql://user@host/newsmon")
    return value


class Config(StrictModel):
    """The whole validated config file (``load_config`` builds it; immutable)."""

    # A SQLite file (relative to the config file) or a PostgreSQL URL (``database_target``).
    database: Annotated[Path | str, BeforeValidator(_database_value)] = Path("newsmon.db")
    env_file: Path | None = None
    feeds: tuple[FeedConfig, ...] = ()
    channels: tuple[ChannelConfig, ...] = ()
    rules: tuple[Path, ...] = (Path("rules"),)
    fetch: FetchSettings = FetchSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    delivery: DeliverySettings = DeliverySettings()
    service: ServiceSettings = ServiceSettings()

    # Filled in by load_config, not by the file.
    source: Path | None = Field(default=None, exclude=True)
    secrets: tuple[str, ...] = Field(default=(), exclude=True, repr=False)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for feed in self.feeds:
            if feed.url in seen:
                raise ValueError(f"feed {feed.url} is listed twice")
            seen.add(feed.url)
        names = [c.name for c in self.channels]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"channel names must be unique: {', '.join(sorted(dupes))}")
        return self

    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    @property
    def is_postgres(self) -> bool:
        """``database:`` is a PostgreSQL URL (not a SQLite file)."""
        return isinstance(self.database, str)

    def database_target(self) -> Path | str:
        """What ``open_storage`` opens: the SQLite file's path, or the PostgreSQL URL."""
        return self.database if isinstance(self.database, str) else self.database_path()

    def database_label(self) -> str:
        """The database as messages name it: the file, or the URL (which holds no password)."""
        return str(self.database_target())

    def database_missing(self) -> bool:
        """A SQLite file that does not exist yet (a PostgreSQL database is asked when opened)."""
        target = self.database_target()
        return isinstance(target, Path) and not target.exists()

    def database_path(self) -> Path:
        """The SQLite file. On PostgreSQL there is none: StorageError, saying so."""
        if isinstance(self.database, str):
            from monitor.errors import StorageError

            where = f" in {self.source}" if self.source else ""
            raise StorageError(f"database:{where} is a PostgreSQL URL: this needs a SQLite database"
                               " file (on PostgreSQL use its own tools, e.g. pg_dump for a backup)")
        return _relative_to(self.database, self.base_dir())

    def rule_files(self) -> list[Path]:
        """The rule files named by ``rules:`` (folders expand to their *.yaml)."""
        files: list[Path] = []
        for entry in self.rules:
            path = _relative_to(entry, self.base_dir())
            if path.is_dir():
                files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
            else:
                files.append(path)
        return files

    def feed_interval(self, feed: FeedConfig) -> float:
        interval = feed.interval if feed.interval is not None else self.fetch.default_interval
        return min(max(interval, self.fetch.min_interval), self.fetch.max_interval)


def secret_values(config: Config) -> list[str]:
    """Everything that must never be logged: ${VAR} values, channel URLs, and the
    query values and userinfo of feed URLs."""
    values = list(config.secrets)
    for name in (DATABASE_PASSWORD_ENV, "PGPASSWORD"):  # the PostgreSQL password, if any
        if os.environ.get(name):
            values.append(os.environ[name])
    for feed in config.feeds:  # private feeds carry tokens in the query or userinfo
        values.extend(url_secrets(feed.url))
    for channel in config.channels:
        values.append(channel.url)
        # The token part alone also shows in some apprise messages.
        if "://" in channel.url:
            values.append(channel.url.split("://", 1)[1])
    return values


def _relative_to(path: Path, base: Path) -> Path:
    path = path.expanduser()
    # normpath: "config/../state/newsmon.db" reads as "state/newsmon.db" in messages.
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """--config, then $NEWSMON_CONFIG, then config/newsmon.yaml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    return DEFAULT_CONFIG


# --- ${VAR} substitution ---------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (systemd EnvironmentFile style). Refuses a world-readable file."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read env_file: {exc.strerror}", path=path) from None
    if mode & (stat.S_IRWXO):
        raise ConfigError(
            "env_file holds secrets and must not be readable by others (chmod 600)", path=path
        )
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise ConfigError("expected KEY=VALUE", path=path, line=number)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _substitute(
    node: Any, env: Mapping[str, str], doc: YamlDocument, loc: tuple[str | int, ...],
    secrets: list[str], errors: list[ConfigError],
) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, env, doc, (*loc, k), secrets, errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, env, doc, (*loc, i), secrets, errors) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        value = env.get(name, "")
        if not value:
            line, col = locate(doc.data, loc)
            errors.append(ConfigError(
                f"environment variable {name} is not set (or empty)", path=doc.path,
                line=line, col=col, key=".".join(map(str, loc)),
            ))
            return ""
        secrets.append(value)
        return value

    return _VAR.sub(repl, node)


def load_config(path: os.PathLike[str] | str, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file. Raises ConfigErrors (each with file and line)."""
    path = Path(path)
    if not path.exists():
        raise ConfigErrors([ConfigError("config file not found", path=path)])
    try:
        doc = load_yaml_file(path)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    raw = to_plain(doc.data)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigErrors([ConfigError("the config must be a mapping of keys", path=path, line=1)])

    env: dict[str, str] = dict(os.environ if environ is None else environ)
    env_file = raw.get("env_file")
    if isinstance(env_file, str):
        try:
            file_values = read_env_file(_relative_to(Path(env_file), path.parent))
        except ConfigError as exc:
            raise ConfigErrors([exc]) from None
        env = {**file_values, **env}

    errors: list[ConfigError] = []
    secrets: list[str] = []
    data = _substitute(raw, env, doc, (), secrets, errors)
    if errors:
        raise ConfigErrors(errors)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise validation_errors(exc, doc) from None
    return config.model_copy(update={"source": path.resolve(), "secrets": tuple(secrets)})
