"""driftline configuration: one YAML file, validated at start.

Every section is a pydantic model with ``extra="forbid"`` so a typo fails at start with the key's
full path and the file it came from. Connection settings come from the environment
(``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL`` and the TLS/SASL variables in :class:`Connections`).
"""

from __future__ import annotations

import copy
import fnmatch
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CONFIG_PATH = Path("config/driftline.yaml")


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or invalid; the message names key and file."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Topics(_Section):
    """Topic names; defaults are the contract in DESIGN.md."""

    predictions: str = "predictions"
    labels: str = "labels"
    drift_alerts: str = "drift-alerts"
    performance_alerts: str = "performance-alerts"
    dead_letter: str = "driftline-dead-letter"
    # outputs of the optional feedback loop (created only when enabled; see Detection)
    retrain_requests: str = "retrain-requests"
    review_requests: str = "review-requests"


class KafkaSettings(_Section):
    """Consumer-group and topic-creation settings for the worker."""

    topics: Topics = Topics()
    group_id: str = Field(default="driftline", min_length=1)
    # Used only when the worker has to create the input topics itself.
    partitions: int = Field(default=8, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1)
    session_timeout_ms: int = Field(default=30_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    # Longest a fetch waits for new records. Kafka answers as soon as there is a record; brokers
    # that always hold a fetch this long (Tansu) add up to this much to alert latency.
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=30_000)


class WorkerSettings(_Section):
    """Batching and checkpoint cadence.

    A batch is cut once ``checkpoint_every_records`` records wait or ``batch_every_ms``
    milliseconds have passed since the previous batch began, whichever comes first (see
    :mod:`streams.batch_window`); its alerts and dead letters are delivered when it has been
    applied. After a batch, a partition whose last checkpoint is ``checkpoint_every_ms`` old
    is written to Redis in one atomic checkpoint: a crash redoes at most that much work (its
    alerts are sent again, with the same ids).
    """

    checkpoint_every_records: int = Field(default=1000, ge=1, le=1_000_000)
    batch_every_ms: int = Field(default=150, ge=1, le=600_000)
    checkpoint_every_ms: int = Field(default=1000, ge=1, le=600_000)
    web_port: int = Field(default=6066, ge=0, le=65535)
    web_host: str = "0.0.0.0"


class MetricsSettings(_Section):
    """Per-model Prometheus series: at most ``max_models`` models per worker get them."""

    max_models: int = Field(default=500, ge=0, le=100_000)


class StateSettings(_Section):
    """Where detector state lives in Redis."""

    key_prefix: str = Field(default="driftline", min_length=1, pattern=r"^[A-Za-z0-9._:-]+$")


class JoinSettings(_Section):
    """Label join: how long a half (prediction or label) waits for the other, in event time."""

    ttl_ms: int = Field(default=86_400_000, ge=1)
    max_pending_per_partition: int = Field(default=1_000_000, ge=1)


class PageHinkleySettings(_Section):
    """Page-Hinkley on a signal standardised by its own warm-up mean and std.

    ``delta`` and ``threshold`` are in standard deviations of the warm-up sample.
    """

    enabled: bool = True
    warmup: int = Field(default=1000, ge=2)
    delta: float = Field(default=0.5, ge=0)
    threshold: float = Field(default=16.0, gt=0)


class ConceptDriftSettings(_Section):
    """ADWIN on each classifier's error stream (1 = wrong prediction).

    Regressors' absolute errors are unbounded, outside ADWIN's guarantees, so they get an upward
    Page-Hinkley on the standardised absolute error instead (``abs_error``).
    """

    enabled: bool = True
    detector: Literal["adwin", "ddm", "eddm", "hddm_a", "hddm_w"] = "adwin"
    delta: float = Field(default=0.002, gt=0, lt=1)
    clock: int = Field(default=32, ge=1)
    min_window_length: int = Field(default=5, ge=1)
    grace_period: int = Field(default=10, ge=1)
    abs_error: PageHinkleySettings = PageHinkleySettings()


class NumericDriftSettings(PageHinkleySettings):
    """Drift on a numeric signal: standardised Page-Hinkley (default) or KSWIN.

    KSWIN (a Kolmogorov-Smirnov test on a sliding window, river's algorithm) also sees changes of
    shape and variance but costs ~20 µs per value and, at river's ``alpha=0.005``, raises about
    1300 false alarms per million values: lower ``kswin_alpha`` in production.
    """

    detector: Literal["page_hinkley", "kswin"] = "page_hinkley"
    kswin_alpha: float = Field(default=0.005, gt=0, lt=1)
    kswin_window_size: int = Field(default=100, ge=10)
    kswin_stat_size: int = Field(default=30, ge=5)


class PSISettings(_Section):
    """Windowed PSI / Jensen-Shannon of each feature against its own reference sample.

    Numeric features use quantile bins of the reference; categorical ones (strings, bools) use
    category frequencies with unseen categories counted. ``warning`` and ``critical`` are PSI
    levels (raised automatically above the sampling noise of the window).
    """

    enabled: bool = True
    reference_size: int = Field(default=1000, ge=10)
    window: int = Field(default=500, ge=10)
    bins: int = Field(default=10, ge=2, le=100)
    max_categories: int = Field(default=50, ge=2, le=10_000)
    warning: float = Field(default=0.1, gt=0)
    critical: float = Field(default=0.25, gt=0)


class DataDriftSettings(NumericDriftSettings):
    """Page-Hinkley per numeric feature and PSI per feature; at most ``max_features`` each."""

    max_features: int = Field(default=50, ge=0, le=1000)
    psi: PSISettings = PSISettings()


class BaselineSettings(_Section):
    """Alert when the windowed metric drops from the model's own baseline (its first values)."""

    enabled: bool = True
    size: int = Field(default=1000, ge=10)
    max_drop: float = Field(default=0.05, gt=0)


class ExpectedAccuracySettings(_Section):
    """Label-free accuracy estimate from ``score`` (calibrated binary classifier).

    Always tracked when enabled (status, metrics); it pages only when ``min_accuracy`` is set,
    since the estimate is only as good as the model's calibration.
    """

    enabled: bool = True
    window: int = Field(default=500, ge=10)
    min_samples: int = Field(default=200, ge=1)
    min_accuracy: float | None = Field(default=None, ge=0, le=1)


class PerformanceSettings(_Section):
    """Windowed accuracy (classification) or MAE (regression) against an absolute threshold."""

    enabled: bool = True
    window: int = Field(default=500, ge=10)
    min_samples: int = Field(default=200, ge=1)
    min_accuracy: float | None = Field(default=0.8, ge=0, le=1)
    max_mae: float | None = Field(default=None, ge=0)
    critical_margin: float = Field(default=0.1, ge=0)
    recovery_margin: float = Field(default=0.05, ge=0, lt=1)
    baseline: BaselineSettings = BaselineSettings()
    expected_accuracy: ExpectedAccuracySettings = ExpectedAccuracySettings()


class LatencySettings(_Section):
    """Latency quantile against a threshold, and Page-Hinkley on the standardised latency."""

    enabled: bool = True
    quantile: float = Field(default=0.99, gt=0, lt=1)
    threshold_ms: float | None = Field(default=None, gt=0)
    window: int = Field(default=1000, ge=10)
    min_samples: int = Field(default=100, ge=1)
    page_hinkley: PageHinkleySettings = PageHinkleySettings()


class DataQualitySettings(_Section):
    """Windowed rates of missing (null) features, type changes and unseen categories."""

    enabled: bool = True
    window: int = Field(default=1000, ge=10)
    min_samples: int = Field(default=100, ge=1)
    max_missing_rate: float = Field(default=0.05, gt=0, le=1)
    max_wrong_type_rate: float = Field(default=0.01, gt=0, le=1)
    max_unseen_category_rate: float = Field(default=0.05, gt=0, le=1)


class RetrainRequestSettings(_Section):
    """Ask the retraining pipeline for a new model: one record on ``retrain-requests``.

    Raised with a model's ``concept_drift`` alerts and ``critical`` performance alerts, then
    quiet for ``cooldown_ms`` of event time (measured on the triggering alerts' ``observed_at``;
    kept in the checkpointed model state, so restarts and replays request exactly the same).
    """

    enabled: bool = False
    cooldown_ms: int = Field(default=86_400_000, ge=0)


class ReviewRequestSettings(_Section):
    """Send a sample of a classifier's low-confidence predictions to ``review-requests``.

    A prediction is a candidate when its ``score`` lies within ``margin`` of ``threshold``. Of the
    candidates, the fraction ``sample_rate`` is taken (decided by a hash of model and prediction
    id, so a replay takes the same ones), at most ``max_per_window`` per model in each tumbling
    window of ``window_ms`` event time.
    """

    enabled: bool = False
    threshold: float = Field(default=0.5, ge=0, le=1)
    margin: float = Field(default=0.05, ge=0, le=1)
    sample_rate: float = Field(default=1.0, gt=0, le=1)
    max_per_window: int = Field(default=100, ge=1)
    window_ms: int = Field(default=3_600_000, ge=1)


class Detection(_Section):
    """Detector settings for one model (the defaults, or defaults merged with an override)."""

    task: Literal["auto", "classification", "regression"] = "auto"
    cooldown_events: int = Field(default=1000, ge=0)
    concept_drift: ConceptDriftSettings = ConceptDriftSettings()
    prediction_drift: NumericDriftSettings = NumericDriftSettings()
    data_drift: DataDriftSettings = DataDriftSettings()
    performance: PerformanceSettings = PerformanceSettings()
    latency: LatencySettings = LatencySettings()
    data_quality: DataQualitySettings = DataQualitySettings()
    retrain_requests: RetrainRequestSettings = RetrainRequestSettings()
    review_requests: ReviewRequestSettings = ReviewRequestSettings()


_GLOB_CHARS = re.compile(r"^[A-Za-z0-9._:/\-*?\[\]!]+$")


def _check_glob(pattern: str) -> str:
    if not pattern or not _GLOB_CHARS.match(pattern):
        raise ValueError(
            f"invalid glob {pattern!r}: use model_id characters [A-Za-z0-9._:/-] and * ? [ ] !"
        )
    depth = 0
    for ch in pattern:
        if ch == "[":
            if depth:
                raise ValueError(f"invalid glob {pattern!r}: nested '['")
            depth = 1
        elif ch == "]" and depth:
            depth = 0
    if depth:
        raise ValueError(f"invalid glob {pattern!r}: unclosed '['")
    return pattern


class Override(_Section):
    """Detection settings for the models whose ``model_id`` matches ``match`` (a glob)."""

    match: str
    detection: dict[str, Any] = Field(default_factory=dict)

    @field_validator("match")
    @classmethod
    def _valid_glob(cls, value: str) -> str:
        return _check_glob(value)


class NotifyRetrySettings(_Section):
    """Webhook retries: capped exponential backoff on connection errors, timeouts, 408, 429, 5xx.

    Waits ``first_delay_s``, then twice as long each time, at most ``max_delay_s``; a
    ``Retry-After`` header replaces the computed wait (at most ``max_retry_after_s``). Answers
    that retrying cannot change (any other 4xx, a redirect) are not retried. ``give_up_after_s``
    None retries until delivered.
    """

    first_delay_s: float = Field(default=0.5, gt=0, le=3600)
    max_delay_s: float = Field(default=60.0, gt=0, le=3600)
    max_retry_after_s: float = Field(default=900.0, gt=0, le=86_400)
    give_up_after_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _first_within_max(self) -> NotifyRetrySettings:
        if self.first_delay_s > self.max_delay_s:
            raise ValueError("first_delay_s must not exceed max_delay_s")
        return self


class NotifyRateLimitSettings(_Section):
    """At most ``max_per_model`` webhook messages per model in any ``window_s`` seconds.

    ``max_per_model`` None: no limit.
    """

    max_per_model: int | None = Field(default=10, ge=1)
    window_s: float = Field(default=60.0, gt=0, le=86_400)


class NotifySettings(_Section):
    """``driftline notify``: post alerts to a chat webhook (Slack-compatible JSON)."""

    group_id: str | None = Field(default=None, min_length=1)
    start_from: Literal["latest", "earliest"] = "latest"
    dedup_ttl_s: int = Field(default=604_800, ge=1)
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    retry: NotifyRetrySettings = NotifyRetrySettings()
    rate_limit: NotifyRateLimitSettings = NotifyRateLimitSettings()

    def consumer_group(self, kafka_group_id: str) -> str:
        """The notifier's consumer group: ``group_id``, else ``<kafka.group_id>-notify``."""
        return self.group_id or f"{kafka_group_id}-notify"


class Config(_Section):
    """The whole driftline configuration file."""

    kafka: KafkaSettings = KafkaSettings()
    worker: WorkerSettings = WorkerSettings()
    metrics: MetricsSettings = MetricsSettings()
    state: StateSettings = StateSettings()
    join: JoinSettings = JoinSettings()
    detection: Detection = Detection()
    overrides: tuple[Override, ...] = ()
    notify: NotifySettings = NotifySettings()

    def detection_for(self, model_id: str) -> Detection:
        """Detection settings for one model: defaults with every matching override applied in order.

        Callers resolve a model once and keep the result (the processor caches it per model).
        """
        matching = [o for o in self.overrides if fnmatch.fnmatchcase(model_id, o.match)]
        if not matching:
            return self.detection
        merged = self.detection.model_dump()
        for override in matching:
            merged = _deep_merge(merged, override.detection)
        return Detection.model_validate(merged)

    def request_topics(self) -> list[str]:
        """The request topics the worker may produce to: those of the features that the defaults
        or any override enable (the topics of features that are off everywhere are not created)."""
        settings = [self.detection] + [
            Detection.model_validate(_deep_merge(self.detection.model_dump(), o.detection))
            for o in self.overrides
        ]
        topics = self.kafka.topics
        out = []
        if any(s.retrain_requests.enabled for s in settings):
            out.append(topics.retrain_requests)
        if any(s.review_requests.enabled for s in settings):
            out.append(topics.review_requests)
        return out


def _deep_merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_error(exc: ValidationError, source: str, prefix: tuple[str | int, ...] = ()) -> str:
    lines = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        path = ""
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {path or '<root>'}: {msg}")
    return "\n".join(lines)


def parse_config(data: object, source: str = "<config>") -> Config:
    """Validate a parsed YAML document; raise :class:`ConfigError` naming key and source."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: <root>: expected a mapping, got {type(data).__name__}")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None
    # Each override must produce valid settings on its own, so errors surface at start,
    # not when the first matching model shows up.
    for i, override in enumerate(config.overrides):
        try:
            Detection.model_validate(_deep_merge(config.detection.model_dump(), override.detection))
        except ValidationError as exc:
            raise ConfigError(_format_error(exc, source, ("overrides", i, "detection"))) from None
    return config


def packaged_default_text() -> str:
    """The packaged default configuration (identical to ``config/driftline.yaml``)."""
    return resources.files("streams").joinpath("defaults/driftline.yaml").read_text("utf-8")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate the config.

    ``path`` None means ``config/driftline.yaml`` in the working directory if present, else the
    packaged defaults.
    """
    if path is None:
        if DEFAULT_CONFIG_PATH.is_file():
            path = DEFAULT_CONFIG_PATH
        else:
            return parse_config(yaml.safe_load(packaged_default_text()), "<packaged defaults>")
    source = str(path)
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    return parse_config(data, source)


class Connections(BaseModel):
    """Connection settings from the environment; secrets never appear in ``repr`` or logs."""

    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str
    redis_url: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = Field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Connections:
        """Read ``KAFKA_*`` and ``REDIS_URL`` (defaults: localhost:9092, redis://localhost:6379/0)."""
        env = os.environ if environ is None else environ
        return cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
            redis_url=env.get("REDIS_URL", "redis://localhost:6379/0"),
            security_protocol=env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            sasl_mechanism=env.get("KAFKA_SASL_MECHANISM") or None,
            sasl_username=env.get("KAFKA_SASL_USERNAME") or None,
            sasl_password=env.get("KAFKA_SASL_PASSWORD") or None,
            ssl_cafile=env.get("KAFKA_SSL_CAFILE") or None,
            ssl_certfile=env.get("KAFKA_SSL_CERTFILE") or None,
            ssl_keyfile=env.get("KAFKA_SSL_KEYFILE") or None,
        )

    def kafka_python_options(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python clients (producer, consumer, admin)."""
        opts: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = self.sasl_password
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, key):
                opts[key] = getattr(self, key)
        return opts

    def redacted_redis_url(self) -> str:
        """``REDIS_URL`` with any password replaced by ``***``, safe to log."""
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", self.redis_url)
