"""Run records: what identifies a run (model, checkpoint hash, config, outputs), stored in its
output folder, so that resuming into it with other settings is refused instead of mixing
results."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from persam_video.atomic import write_text
from persam_video.config import MAX_SHOWN_VALUE, ConfigError, PerSAMConfig, load_json


def normalized(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as JSON gives it back; a ``config`` written by an older release is read with
    today's keys (renamed keys moved), so that it compares equal."""
    data = json.loads(json.dumps(record))
    if isinstance(data.get("config"), dict):
        with contextlib.suppress(ConfigError):
            data["config"] = PerSAMConfig.from_dict(data["config"]).to_dict()
    return data


def check_run_record(path: Path, record: dict[str, Any]) -> None:
    """Store ``record`` at ``path``, or check that it equals the one stored there.

    Raises ValueError naming the fields that differ.
    """
    wanted = normalized(record)
    if path.is_file():
        try:
            stored = normalized(load_json(path.read_text(encoding="utf-8")))
        except (ValueError, AttributeError) as exc:  # not JSON, too deep, not a mapping
            raise ValueError(
                f"{path} is not a run record ({str(exc)[:MAX_SHOWN_VALUE]}); use "
                "another --out folder or delete it"
            ) from None
        if stored != wanted:
            changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise ValueError(
                f"{path.parent} holds results of another run (different {', '.join(changed)}); "
                "use another --out folder or delete it"
            )
        return
    write_text(path, json.dumps(wanted, indent=1))
