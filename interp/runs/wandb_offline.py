"""Read an offline W&B run (`<run>/wandb/offline-run-*/run-*.wandb`) without a server.

The file is a W&B header followed by a LevelDB-style log of protobuf `Record`s
(32 KiB blocks, 7-byte chunk headers). wandb ships the protobuf schema but no
public reader, and we need one to check groups and configs of offline sweeps.
"""

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


def offline_runs(run_dir: str | Path) -> list[Path]:
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))


def run_info(wandb_file: str | Path) -> dict:
    """Group, job type, project, name and tags of one offline run."""
    for record in read_records(wandb_file):
        if record.WhichOneof("record_type") == "run":
            r = record.run
            return {"id": r.run_id, "group": r.run_group, "job_type": r.job_type, "project": r.project,
                    "name": r.display_name, "tags": list(r.tags)}
    raise ValueError(f"{wandb_file} holds no run record")


def history_keys(wandb_file: str | Path) -> set[str]:
    """Every metric name logged to the run's history (wandb.log / Lightning's log_metrics)."""
    keys = set()
    for record in read_records(wandb_file):
        if record.WhichOneof("record_type") == "history":
            keys.update(item.key or "/".join(item.nested_key) for item in record.history.item)
    return keys


def history(wandb_file: str | Path) -> list[dict]:
    """The run's history rows (one per wandb.log call), numbers only: {key: value, ...} with `_step`,
    `trainer/global_step` (Lightning's) and the logged metrics. Images, tables and histograms are left out."""
    import json

    rows = []
    for record in read_records(wandb_file):
        if record.WhichOneof("record_type") != "history":
            continue
        row = {}
        for item in record.history.item:
            value = json.loads(item.value_json)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[item.key or "/".join(item.nested_key)] = value
        rows.append(row)
    return rows
