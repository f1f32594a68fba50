"""The migration plan shared by the build and first boot, and the stamp that lets first boot skip it."""

import json
import subprocess

from appliance.agent import migrations
from pipeline.profiles import load_profile


class Recorder:
    """Stands in for the command runner: records argv and user, answers list_cells."""

    def __init__(self, cells: str = ""):
        self.calls = []
        self.cells = cells

    def __call__(self, cmd, user=None):
        self.calls.append((user, cmd))
        out = self.cells if "list_cells" in cmd else ""
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")


def test_zed_plan_order_users_and_config_files():
    runner = Recorder()
    migrations.migrate(load_profile("bookworm-zed"), migrations.APPLIANCE_CONFIGS, run_as=lambda s: s, runner=runner)
    assert [cmd[0] for _, cmd in runner.calls] == ["keystone-manage", "glance-manage", "glance-manage", "placement-manage",
                                                   "nova-manage", "nova-manage", "nova-manage", "nova-manage", "nova-manage",
                                                   "neutron-db-manage"]
    # Glance's metadata definitions, as glance-common installs them, right after its schema.
    assert runner.calls[2] == ("glance", ["glance-manage", "--config-file", "/etc/glance/glance-api.conf", "db",
                                          "load_metadefs", "--path", "/usr/share/glance-common/metadefs"])
    assert {user for user, _ in runner.calls} == {"keystone", "glance", "placement", "nova", "neutron"}
    neutron = runner.calls[-1][1]
    assert neutron == ["neutron-db-manage", "--config-file", "/etc/neutron/neutron.conf",
                       "--config-file", "/etc/neutron/plugins/ml2/ml2_conf.ini", "upgrade", "head"]


def test_cell_mappings_are_templates_without_secrets():
    runner = Recorder()
    migrations.migrate(load_profile("bookworm-zed"), migrations.APPLIANCE_CONFIGS, run_as=lambda s: None,
                       runner=runner)
    cell_cmds = [cmd for _, cmd in runner.calls if "map_cell0" in cmd or "create_cell" in cmd]
    assert len(cell_cmds) == 2
    for cmd in cell_cmds:
        urls = [a for a in cmd if "://" in a]
        assert urls and all("{password}" in u and "{hostname}" in u for u in urls), cmd


def test_existing_cell1_is_not_created_again():
    runner = Recorder(cells="| cell1 | 2d3c... | rabbit:... |")
    migrations.migrate(load_profile("bookworm-zed"), migrations.APPLIANCE_CONFIGS, run_as=lambda s: s, runner=runner)
    assert not any("create_cell" in cmd for _, cmd in runner.calls)


def test_newton_has_no_cells_v2_and_no_placement():
    runner = Recorder()
    migrations.migrate(load_profile("xenial-newton"), migrations.APPLIANCE_CONFIGS, run_as=lambda s: s, runner=runner)
    flat = [" ".join(cmd) for _, cmd in runner.calls]
    assert not any("cell_v2" in c or "placement-manage" in c for c in flat)
    assert any("nova-manage --config-file /etc/nova/nova.conf db sync" in c for c in flat)


def test_stamp_matches_only_the_same_package_versions(tmp_path):
    profile = load_profile("bookworm-zed")
    packages = migrations.schema_packages(profile)
    assert "nova-api" in packages and "keystone" in packages and "rabbitmq-server" not in packages
    versions = {p: "1.0" for p in packages}
    stamp = tmp_path / "migrated.json"
    assert not migrations.migrated_at_build(profile, stamp, versions=lambda pk: versions)  # no stamp
    stamp.write_text(json.dumps({"packages": versions}))
    assert migrations.migrated_at_build(profile, stamp, versions=lambda pk: dict(versions))
    upgraded = {**versions, "nova-api": "2.0"}
    assert not migrations.migrated_at_build(profile, stamp, versions=lambda pk: upgraded)
    stamp.write_text("{not json")
    assert not migrations.migrated_at_build(profile, stamp, versions=lambda pk: versions)


def test_build_configs_point_at_the_socket_and_are_private(tmp_path):
    profile = load_profile("bookworm-zed")
    configs = migrations._build_configs(profile, tmp_path / "mysqld.sock", "pw", tmp_path)
    assert set(configs) == set(migrations.APPLIANCE_CONFIGS)
    for files in configs.values():
        text = open(files[0]).read()
        assert f"unix_socket={tmp_path / 'mysqld.sock'}" in text
        assert (tmp_path / files[0]).stat().st_mode & 0o077 == 0
