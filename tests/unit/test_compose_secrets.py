"""A compose file's secrets: declared by file or environment, asked for by services in the short and long
syntax, staged as private files whose content no run record holds; what kiln cannot do refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln import records
from kiln.compose.project import load
from kiln.compose.secrets import stage
from kiln.errors import UsageError
from kiln.targets.base import RunConfig

FILE = """\
secrets:
  db-password: {file: ./db-password.txt}
  api-key: {environment: API_KEY}
services:
  db:
    image: x
    secrets:
      - db-password
      - {source: api-key, target: /run/secrets/key, uid: "999", gid: "998", mode: 0440}
"""


def test_file_and_environment_secrets_reach_a_service_as_private_files(tmp_path: Path) -> None:
    (tmp_path / "db-password.txt").write_text("from a file\n")
    (tmp_path / "compose.yaml").write_text(FILE)
    project = load(tmp_path / "compose.yaml", env={"API_KEY": "k"})
    uses = project.services["db"].secrets
    assert [(u.source, u.target, u.uid, u.gid, u.mode) for u in uses] == [
        ("db-password", "db-password", -1, -1, 0o400),  # the service's account, readable by it only
        ("api-key", "key", 999, 998, 0o440),
    ]
    import os

    os.environ["API_KEY"] = "from the environment"
    try:
        share = stage(tmp_path / "staged" / "db", project.secrets, uses)
    finally:
        del os.environ["API_KEY"]
    assert share is not None and share.lines() == ("0 db-password -1 -1 400", "1 key 999 998 440")
    assert (share.directory / "0").read_text() == "from a file\n"
    assert (share.directory / "1").read_text() == "from the environment"
    assert share.directory.stat().st_mode & 0o777 == 0o700 and (share.directory / "0").stat().st_mode & 0o777 == 0o400
    record = records.encode(RunConfig(secrets=share))  # what an instance's config.json holds
    assert b"from a file" not in record and b"from the environment" not in record
    assert records.decode(record, RunConfig).secrets == share  # the supervisor reads it back


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("secrets:\n  s: {file: ./missing.txt}\nservices:\n  w: {image: x}\n", {}, "secrets.s: its file"),
        ("secrets:\n  s: {environment: NOPE}\nservices:\n  w: {image: x}\n", {}, "its variable NOPE is not set"),
        ("secrets:\n  s: {external: true}\nservices:\n  w: {image: x}\n", {}, "external secrets live in a swarm"),
        ("services:\n  w: {image: x, secrets: [s]}\n", {}, "services.w.secrets: s is not declared under secrets"),
        ("secrets:\n  s: {environment: A}\nservices:\n  w:\n    image: x\n    secrets: [{source: s, target: /etc/s}]\n",
         {"A": "1"}, "kiln puts a secret in /run/secrets/NAME"),
        ("secrets:\n  s: {environment: A}\nservices:\n  w:\n    image: x\n    secrets: [s, {source: s}]\n",
         {"A": "1"}, "two secrets at /run/secrets/s"),
    ],
)  # fmt: skip
def test_what_kiln_cannot_give_is_refused_in_one_line(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    (tmp_path / "compose.yaml").write_text(text)
    with pytest.raises(UsageError) as err:
        load(tmp_path / "compose.yaml", env=env)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_service_handed_secrets_binds_or_volumes_is_built_with_9p_in_its_kernel(tmp_path: Path) -> None:
    from kiln.analyze.needs import Needs
    from kiln.compose.lifecycle import shares_needed

    (tmp_path / "pw.txt").write_text("pw")
    (tmp_path / "site.conf").write_text("conf")
    (tmp_path / "compose.yaml").write_text("""
secrets:
  pw: {file: ./pw.txt}
services:
  backend: {image: backend, secrets: [pw]}
  proxy: {image: proxy, volumes: ["./site.conf:/etc/site.conf:ro"]}
  plain: {image: plain}
""")
    services = load(tmp_path / "compose.yaml", env={}).services
    assert shares_needed(services["backend"]) == (("9p", "compose: service backend's secrets"),)
    assert shares_needed(services["proxy"]) == (("9p", "compose: service proxy's volumes and binds"),)
    assert shares_needed(services["plain"]) == ()
    # the build's needs: the analysis's reasons first, the asked-for feature added with its own
    found = Needs(("base", "virtio-net"), {"virtio-net": "the app listens on port 8000"})
    asked = found.plus(shares_needed(services["backend"]))
    assert asked.features == ("9p", "base", "virtio-net")
    assert asked.reasons == {"9p": "compose: service backend's secrets", "virtio-net": "the app listens on port 8000"}
    assert found.plus(()) is found
