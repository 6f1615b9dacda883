"""``packyard check [--repair]`` on planted damage: a lost file, a changed file, an orphan,
a damaged cached upstream file; repaired where it can be, named where it cannot."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import main
from app.domain.storage_check import check_storage, repair
from app.extensions import db
from app.models import PackageFile, UpstreamFile
from app.runtime import storage
from tests.conftest import Registry


@pytest.fixture
def project_index(registry: Registry) -> tuple[str, str]:
    """Four files uploaded; the project's index URL and a token to read it."""
    project = registry.project(registry.group("team"), "lib")
    token = registry.token(registry.user("root", admin=True))
    registry.releases(project, token, "demo", ("1.0", "1.1"))
    return f"/api/v4/projects/{project.id}/packages/pypi/simple/demo/", token


def plant(key: str, content: bytes) -> None:
    with storage().writer(key) as out:
        out.write(content)


@pytest.fixture
def damage(registry: Registry, project_index: tuple[str, str]) -> dict[str, str]:
    """One of each kind of damage; the filename or key of each."""
    files = {f.filename: f for f in db.session.query(PackageFile)}
    lost, changed = files["demo-1.0-py3-none-any.whl"], files["demo-1.1.tar.gz"]
    storage().delete(lost.storage_key)
    plant(changed.storage_key, b"not what was uploaded")
    plant("orphans/left-behind.whl", b"no row names me")
    body = b"upstream bytes"
    upstream = UpstreamFile(
        normalized_name="left-pad", filename="left_pad-1.0.tar.gz", url="https://up/x",
        sha256=hashlib.sha256(body).hexdigest(), storage_key="upstream/left_pad-1.0.tar.gz",
        stored=True,
    )  # fmt: skip
    db.session.add(upstream)
    db.session.commit()
    plant(upstream.storage_key, b"tampered " + body)
    return {"lost": lost.filename, "changed": changed.filename, "upstream": upstream.filename}


def test_a_sound_instance_has_no_findings(registry, project_index):
    assert check_storage(db.session, storage(), lambda _: None) == []


def test_each_kind_of_damage_is_found_and_named(registry, damage):
    findings = {f.describe().split(" (")[0] for f in check_storage(db.session, storage(), print)}
    assert findings == {
        f"missing: {damage['lost']}",
        f"hash mismatch: {damage['changed']}",
        f"hash mismatch: {damage['upstream']}",
        "orphan: orphans/left-behind.whl",
    }


def test_repair_fixes_what_it_can_and_says_what_it_cannot(registry, damage, project_index):
    findings = check_storage(db.session, storage(), lambda _: None)
    repair(db.session, storage(), findings, grace=0)
    outcome = {f.name: (f.repaired, f.unrepairable) for f in findings}
    assert outcome["orphans/left-behind.whl"] == ("removed from storage", None)
    assert not storage().exists("orphans/left-behind.whl")
    assert "fetches it from the upstream again" in outcome[damage["upstream"]][0]
    assert db.session.query(UpstreamFile).one().stored is False
    for name in (damage["lost"], damage["changed"]):
        repaired, unrepairable = outcome[name]
        assert "marked failed" in repaired and "restore them from a backup" in unrepairable
    # Damaged files are no longer offered: the index lists only the two sound ones.
    url, token = project_index
    response = registry.client.get(url, headers={"PRIVATE-TOKEN": token})
    assert damage["lost"] not in response.text and damage["changed"] not in response.text
    assert "demo-1.1-py3-none-any.whl" in response.text and "demo-1.0.tar.gz" in response.text
    # What is left cannot be repaired, and is still reported.
    left = check_storage(db.session, storage(), lambda _: None)
    assert sorted(f.name for f in left) == sorted([damage["lost"], damage["changed"]])


def test_an_orphan_that_gains_a_row_during_the_grace_period_is_kept(registry, damage):
    findings = check_storage(db.session, storage(), lambda _: None)
    orphan = next(f for f in findings if f.kind == "orphan")
    row = db.session.query(PackageFile).first()
    row.storage_key = orphan.key  # as an upload in flight commits its row
    db.session.commit()
    repair(db.session, storage(), [orphan], grace=0)
    assert orphan.repaired.startswith("kept") and storage().exists(orphan.key)


def test_a_file_deleted_during_the_check_is_left_alone(registry, damage):
    findings = check_storage(db.session, storage(), lambda _: None)
    lost = next(f for f in findings if f.kind == "missing")
    with registry.app.app_context():  # another process deletes its file (row first)
        db.session.execute(sa.delete(PackageFile).where(PackageFile.id == lost.row.id))
        db.session.commit()
    repair(db.session, storage(), [lost], grace=0)
    assert lost.repaired == "nothing to do: its row was deleted meanwhile"


def test_the_command_exits_1_and_names_each_file(registry, damage, database_url):
    env = {
        "PACKYARD_DATA_DIR": registry.app.config["DATA_DIR"],
        "PACKYARD_DATABASE_URL": database_url,
        "PACKYARD_LOAD_ENTRYPOINT_PLUGINS": "false",
    }
    runner = CliRunner()
    found = runner.invoke(main, ["check"], env=env)
    assert found.exit_code == 1 and "4 problems found" in found.output
    assert f"missing: {damage['lost']}" in found.output
    assert "orphan: orphans/left-behind.whl" in found.output
    assert "repaired" not in found.output
    repaired = runner.invoke(main, ["check", "--repair", "--grace", "0"], env=env)
    assert repaired.exit_code == 1
    assert "repaired: removed from storage" in repaired.output
    assert "cannot repair: its bytes are lost" in repaired.output
    assert "2 problems found" in runner.invoke(main, ["check"], env=env).output
