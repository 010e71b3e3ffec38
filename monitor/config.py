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

    _check_url = field_validator("url")(classmethod(lambda cls, v: _http_url(v)))

    @property
    def label(self) -> str:
        return self.name or self.url


class ChannelConfig(StrictModel):
    """Where alerts go: any apprise URL."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    url: str  # an apprise URL; usually ${VAR} so the secret stays out of the file
    topics: tuple[str, ...] | None = None  # None: every topic
    min_severity: Severity = "low"
    admin: StrictBool = False  # daemon-health messages go to admin channels


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
    # Operator allow-list of networks that may be reached although not public
    # (e.g. ["127.0.0.0/8"] for a local test or an intranet). Applies to all requests.
    allow_networks: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] | None = None


class AnalysisSettings(StrictModel):
    # A trained spaCy pipeline such as "en_core_web_sm", used when installed (adds NER).
    spacy_model: str | None = None
    workers: int | None = Field(default=None, ge=0)  # None: one per core; 0: in-process


class DeliverySettings(StrictModel):
    interval: Duration = 30.0  # how often the delivery job runs
    batch: int = Field(default=50, ge=1)
    max_attempts: int = Field(default=10, ge=1)
    retry_base: Duration = 30.0
    retry_max: Duration = 3600.0
    timeout: Duration = 30.0  # per send


class ServiceSettings(StrictModel):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"


class Config(StrictModel):
    database: Path = Path("newsmon.db")
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

    def database_path(self) -> Path:
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


def _relative_to(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


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


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
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
