import shutil

from pipeline.imagebuild.lxc import guest_element_dirs, inputs_key
from pipeline.imagebuild.settings import ELEMENTS_DIR

ENV = {"DIB_RELEASE": "bookworm", "DIB_LXC_GUEST_MIRROR": "http://deb.example/debian", "DIB_IMAGE_CACHE": "/a", "HOME": "/root"}


def copy_elements(tmp_path):
    for d in guest_element_dirs():
        shutil.copytree(d, tmp_path / d.name)
    return guest_element_dirs(tmp_path)


def key(dirs, env=ENV, **kw):
    return inputs_key(dirs, env, dib_version=kw.get("dib", "3.43.0"), zstd_level=kw.get("zstd", 19))


def test_guest_elements_exist():
    assert all(d.is_dir() and d.parent == ELEMENTS_DIR for d in guest_element_dirs())


def test_key_is_stable(tmp_path):
    dirs = copy_elements(tmp_path)
    assert key(dirs) == key(dirs) == key(list(reversed(dirs)))


def test_key_follows_element_content_and_mode(tmp_path):
    dirs = copy_elements(tmp_path)
    before = key(dirs)
    script = tmp_path / "lxc-guest-trim" / "finalise.d" / "95-lxc-guest-trim"
    script.write_text(script.read_text() + "\n# changed\n")
    changed = key(dirs)
    assert changed != before
    script.chmod(0o644)
    assert key(dirs) != changed


def test_key_follows_dib_settings_but_not_caches_or_unrelated_env(tmp_path):
    dirs = copy_elements(tmp_path)
    before = key(dirs)
    assert key(dirs, {**ENV, "DIB_LXC_GUEST_MIRROR": "http://other/debian"}) != before
    assert key(dirs, {**ENV, "DIB_IMAGE_CACHE": "/elsewhere", "HOME": "/tmp"}) == before
    assert key(dirs, dib="3.44.0") != before
    assert key(dirs, zstd=3) != before


def test_appliance_templates_are_not_inputs_of_the_guest(tmp_path):
    # A template-only change must not rebuild the guest: overlays are not among its inputs.
    assert not any("overlays" in str(d) for d in guest_element_dirs())
