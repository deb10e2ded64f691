"""The announce step: the latest complete version, published on RabbitMQ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferkit import modelrepo
from services.inference.training.announce import VERSION_CREATED_KEY, main as announce_main


def test_announce_takes_the_latest_complete_version(tmp_path: Path) -> None:
    for v, complete in ((1, True), (2, True), (3, False)):
        d = tmp_path / "m" / str(v)
        d.mkdir(parents=True)
        if complete:
            (d / "metadata.json").write_text("{}")
    (tmp_path / "m" / ".4.tmp").mkdir()
    assert modelrepo.latest_version(tmp_path / "m") == 2  # 3 is still being written
    assert modelrepo.latest_version(tmp_path / "other") is None
    with pytest.raises(FileNotFoundError):
        announce_main(["--repo", str(tmp_path), "--name", "other"])


def test_announce_publishes_the_new_version_on_rabbitmq(tmp_path: Path, amqp_url, announcements, monkeypatch) -> None:
    channel, queue = announcements
    (tmp_path / "fer_resnet18" / "7").mkdir(parents=True)
    (tmp_path / "fer_resnet18" / "7" / "metadata.json").write_text("{}")
    monkeypatch.setenv("AMQP_URL", amqp_url)
    assert announce_main(["--repo", str(tmp_path), "--name", "fer_resnet18"]) == 0
    method, props, body = channel.basic_get(queue, auto_ack=True)
    assert method is not None, "no message reached the bound queue"
    assert method.routing_key == VERSION_CREATED_KEY
    assert props.content_type == "application/json" and props.delivery_mode == 2
    assert json.loads(body) == {"name": "fer_resnet18", "version": 7}


def test_a_broker_that_stays_down_leaves_the_job_succeeded_and_the_version_unannounced(tmp_path: Path, monkeypatch, capsys) -> None:
    """The job must not fail on its last step: Kubernetes would run the whole script again, training again
    and exporting a duplicate version. The exported version is listed and loads when promoted."""
    from services.inference.training import announce
    from tests.fixtures.databases import free_port

    (tmp_path / "fer_resnet18" / "3").mkdir(parents=True)
    (tmp_path / "fer_resnet18" / "3" / "metadata.json").write_text("{}")
    monkeypatch.setenv("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    monkeypatch.setattr(announce, "ANNOUNCE_BACKOFF_S", 0.01)
    assert announce_main(["--repo", str(tmp_path), "--name", "fer_resnet18"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"name": "fer_resnet18", "version": 3, "announced": False}
