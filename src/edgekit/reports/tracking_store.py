"""Where tracking goes: the MLflow store's URI (an embedded SQLite file by default), where a new
experiment keeps its artifacts, whether MLflow is installed, and whether a server answers."""
from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ENV_URI = "EDGEKIT_TRACKING_URI"
DEFAULT_DIR = "mlruns"  # ./mlruns/mlflow.db and ./mlruns/artifacts/
PREFLIGHT_S = 5.0  # how long to wait for a tracking server to answer /health


class TrackingFailed(Exception):
    """The tracking store cannot be used (said as it is, without the exception's type)."""


def default_tracking_uri() -> str:
    """``$EDGEKIT_TRACKING_URI`` if set, else an embedded SQLite store in the current folder:
    ``sqlite:///<abs>/mlruns/mlflow.db`` (artifacts in ``./mlruns/artifacts``). Nothing needs to
    run for it; ``mlflow ui --backend-store-uri <that uri>`` browses it. Creates nothing."""
    uri = os.environ.get(ENV_URI, "").strip()
    if uri:
        return uri
    return "sqlite:///" + (Path.cwd() / DEFAULT_DIR / "mlflow.db").resolve().as_posix()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute), or None for anything else."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    if not rest.startswith("///"):
        return None
    path = rest[3:].split("?", 1)[0]  # "/abs/x.db" (sqlite:////abs/x.db) or "rel/x.db"
    if not path or path == ":memory:":
        return None
    return Path(path).resolve()


def artifact_location(uri: str, experiment: str) -> str | None:
    """A ``file:`` URI next to a SQLite store for a new experiment's artifacts (MLflow would
    otherwise put them under ``./mlruns`` of whatever the working folder is); None elsewhere
    (a server decides its own artifact store)."""
    db = sqlite_path(uri)
    if db is None:
        return None
    safe = re.sub(r"[^\w.-]+", "_", experiment).strip("._") or "experiment"
    return (db.parent / "artifacts" / safe).as_uri()


def check_available() -> None:
    """Raise MissingExtra now if MLflow is not installed (call it before a long run)."""
    mlflow_client()


def mlflow_client():
    """MLflow's ``MlflowClient`` class (MissingExtra when MLflow is not installed)."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        from ..core.errors import MissingExtra

        raise MissingExtra("mlflow", "tracking", "Experiment tracking") from None
    return MlflowClient


def preflight(uri: str) -> None:
    """For an HTTP tracking server: one short request, no retries. MLflow's own client retries a
    refused connection for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES, default 7 with backoff), so a
    server that is down would stall the end of a benchmark; any HTTP answer, even 401/404, counts
    as up."""
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme not in ("http", "https"):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=PREFLIGHT_S):  # noqa: S310 (the user's own URI)
            pass
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingFailed(f"tracking server {uri} is not reachable ({reason})") from None
