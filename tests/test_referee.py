"""The referee reads what the sandbox leaves behind as hostile: a probe's record at a path student code knows."""
import os

import torch

from autograde.referee import read_record


def test_a_link_at_the_record_path_is_not_followed(tmp_path):
    """Student code replaced the probe's record with a link to a file only the grader (maybe root) can read;
    the referee followed it and parsed that file. Here the file is a readable record, to show it is not read."""
    secret = tmp_path / "secret.pt"
    torch.save({"secret": torch.tensor(42)}, secret)
    (tmp_path / "box").mkdir()
    record = tmp_path / "box" / "probe-1.pt"
    record.symlink_to(secret)
    assert read_record(record) == {"error": "the probe's record is not a file the grader reads (OSError)"}
    os.mkfifo(tmp_path / "box" / "probe-2.pt")              # would block a plain open() forever
    assert read_record(tmp_path / "box" / "probe-2.pt") == {"error": "the probe's record is not a regular file"}
    assert "saved no record" in read_record(tmp_path / "box" / "none.pt")["error"]
    torch.save({"value": torch.tensor(1.5)}, tmp_path / "box" / "probe-3.pt")
    assert read_record(tmp_path / "box" / "probe-3.pt") == {"value": torch.tensor(1.5)}
