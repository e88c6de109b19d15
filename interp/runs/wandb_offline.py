"""Read an offline W&B run (`<run>/wandb/offline-run-*/run-*.wandb`) without a server.

The file is a W&B header followed by a LevelDB-style log of protobuf `Record`s
(32 KiB blocks, 7-byte chunk headers). wandb ships the protobuf schema but no
public reader, and we need one to check groups and configs of offline sweeps.
"""

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

_FILE_HEADER = 7
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    records, pending, pos = [], b"", _FILE_HEADER
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:      # block trailer too small for a header: skip to next block
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


ANALYZE_JOB = "analyze"   # the job type of the runs analyze.py logs beside a training run (interp.analyze_wandb)


def offline_runs(run_dir: str | Path, training_only: bool = False) -> list[Path]:
    """The run's offline W&B records in time order; `training_only` leaves out analyze.py's runs."""
    found = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    return [f for f in found if not (training_only and (read_run_info(f) or {}).get("job_type") == ANALYZE_JOB)]


def run_info(wandb_file: str | Path) -> dict:
    """Group, job type, project, name and tags of one offline run."""
    for record in read_records(wandb_file):
        if record.WhichOneof("record_type") == "run":
            r = record.run
            return {"id": r.run_id, "group": r.run_group, "job_type": r.job_type, "project": r.project,
                    "name": r.display_name, "tags": list(r.tags)}
    raise ValueError(f"{wandb_file} holds no run record")


def read_run_info(wandb_file: str | Path) -> dict | None:
    """`run_info`, or None for a record that was cut short before its run record (or cannot be read)."""
    try:
        return run_info(wandb_file)
    except (ValueError, OSError):
        return None


def history_keys(wandb_file: str | Path) -> set[str]:
    """Every metric name logged to the run's history (wandb.log / Lightning's log_metrics)."""
    keys = set()
    for record in read_records(wandb_file):
        if record.WhichOneof("record_type") == "history":
            keys.update(item.key or "/".join(item.nested_key) for item in record.history.item)
    return keys


def _items(items) -> dict:
    """Decoded values by key; W&B flattens dict values (media, tables) into nested keys: rebuild them."""
    out: dict = {}
    for item in items:
        *parents, last = [item.key] if item.key else list(item.nested_key)
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = json.loads(item.value_json)
    return out


def summary(wandb_file: str | Path) -> dict:
    """The run's summary as W&B would show it (later updates win), plus "_exit_code" if it finished."""
    out = {}
    for record in read_records(wandb_file):
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            out.update(_items(record.summary.update))
        elif kind == "exit":
            out["_exit_code"] = record.exit.exit_code
    return out


def history(wandb_file: str | Path) -> list[dict]:
    """Every logged row, values decoded from JSON (media are dicts with "_type" and "path" under files/)."""
    return [_items(record.history.item) for record in read_records(wandb_file)
            if record.WhichOneof("record_type") == "history"]
