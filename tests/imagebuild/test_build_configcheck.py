from pipeline.imagebuild.configcheck import NAMESPACES, image_namespaces, problems_in


def test_problems_and_runtime_auth_options_are_told_apart():
    output = "\n".join([
        "INFO:oslo_config.validator:keystone_authtoken is in a group that may have dynamically defined options",
        "ERROR:root:service_user/region_name is not part of the sample config",
        "ERROR:root:DEFAULT/my_ipp is not part of the sample config",
        "ERROR:root:glance/virt_type is not part of the sample config",
        "ERROR:oslo_config.validator:libvirt/virt_typ not found",
    ])
    problems, allowed = problems_in(output)
    assert allowed == ["service_user/region_name"]
    assert problems == ["ERROR:root:DEFAULT/my_ipp is not part of the sample config",
                        "ERROR:root:glance/virt_type is not part of the sample config",
                        "ERROR:oslo_config.validator:libvirt/virt_typ not found"]


def test_clean_output_has_no_problems():
    assert problems_in("INFO:oslo_config.validator:keystone_authtoken is skipped\n") == ([], [])


def test_image_namespaces_read_from_entry_points(tmp_path):
    info = tmp_path / "usr/lib/python3/dist-packages/nova-26.2.2.egg-info"
    info.mkdir(parents=True)
    (info / "entry_points.txt").write_text("[console_scripts]\nnova-api = x:y\n\n[oslo.config.opts]\nnova.conf = nova.conf.opts:list_opts\n")
    assert image_namespaces(tmp_path) == {"nova.conf"}


def test_every_zed_service_config_has_namespaces():
    from pipeline.profiles import load_profile

    ini_like = [f.path for f in load_profile("bookworm-zed").files() if f.path.endswith((".conf", ".ini")) and "/etc/" in f.path
                and any(p in f.path for p in ("keystone", "glance", "placement", "nova", "neutron"))
                and f.template != "etc/uwsgi/api.ini.j2"  # uwsgi's own format, not oslo.config
                and not f.path.startswith("/etc/systemd/")]  # unit drop-ins (nova-compute's), not oslo.config
    assert ini_like and all(path in NAMESPACES for path in ini_like)
