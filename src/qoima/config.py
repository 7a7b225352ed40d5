"""Settings: one frozen dataclass, loaded once by the CLI from defaults, TOML and QOIMA_* env.

Precedence (lowest first): defaults, the TOML file (``--config`` or ``QOIMA_CONFIG``), environment
variables ``QOIMA_<FIELD>`` (upper case), then command-line flags. Every field is documented in
docs/configuration.md; a test checks that.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./qoima-data")
    database_url: str = ""  # empty: SQLite file index.sqlite in data_dir
    storage_url: str = ""  # empty: files under data_dir/blobs
    host: str = "127.0.0.1"
    dicom_port: int = 11112
    http_port: int = 8080
    ae_title: str = "QOIMA"
    max_pdu_bytes: int = 262144
    dimse_timeout_s: float = 60.0
    network_timeout_s: float = 60.0
    max_associations: int = 32
    workers: int = 1  # processes serving DIMSE and HTTP, accepting on one listening socket each
    duplicate_policy: str = "reject"  # "reject" | "overwrite" for same UID, different content
    max_instance_bytes: int = 4 * 1024**3
    max_image_pixels: int = 1 << 28  # Rows * Columns * Frames above this is refused as absurd
    max_sequence_depth: int = 32
    sqlite_synchronous: str = "FULL"
    orphan_sweep_age_s: float = 3600.0
    ai_enabled: bool = True
    ai_stable_age_s: float = 10.0
    ai_queue_url: str = ""  # empty: embedded SQLite queue in data_dir; redis://... for workers
    ai_workers: int = 1
    ai_threads: int = 2
    log_level: str = "INFO"
    auth_required: bool = False  # also on whenever host is not a loopback address
    tls_certfile: str = ""  # PEM certificate: HTTPS and DICOM TLS when set
    tls_keyfile: str = ""
    tls_ca_file: str = ""  # DICOM TLS: require client certificates signed by this CA
    oidc_jwks: str = ""  # path or URL of the identity provider's JWKS (JWT bearer tokens)
    oidc_issuer: str = ""
    oidc_audience: str = ""
    audit_syslog_host: str = ""  # send each audit record as RFC 5424 syslog over UDP
    audit_syslog_port: int = 514
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'index.sqlite').resolve()}"

    @property
    def is_auth_enforced(self) -> bool:
        """Authentication is on when asked for or when bound beyond this machine."""
        return self.auth_required or self.host not in {"127.0.0.1", "::1", "localhost"}

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or f"file://{(self.data_dir / 'blobs').resolve()}"


LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def _coerce(name: str, raw: Any) -> Any:
    kind = type(getattr(Settings(), name))
    if kind is bool and isinstance(raw, str):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind in (int, float, str) or issubclass(kind, Path):
        return kind(raw)
    return raw


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, an optional TOML file, QOIMA_* env vars and overrides."""
    values: dict[str, Any] = {}
    names = {f.name for f in fields(Settings)} - {"extra"}
    env_file = os.environ.get("QOIMA_CONFIG")
    path = config_file or (Path(env_file) if env_file else None)
    extra: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as fh:
            for key, value in tomllib.load(fh).items():
                if key in names:
                    values[key] = _coerce(key, value)
                else:
                    extra[key] = value
    for name in names:
        env = os.environ.get(f"QOIMA_{name.upper()}")
        if env is not None:
            values[name] = _coerce(name, env)
    for name, value in overrides.items():
        if value is not None:
            values[name] = _coerce(name, value)
    if values.get("duplicate_policy", "reject") not in {"reject", "overwrite"}:
        raise ValueError("duplicate_policy must be 'reject' or 'overwrite'")
    return dataclasses.replace(Settings(), extra=extra, **values)


def documented_setting_names() -> list[str]:
    return [f.name for f in fields(Settings) if f.name != "extra"]
