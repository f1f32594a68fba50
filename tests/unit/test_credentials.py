import stat

from appliance.credentials import SECRET_LENGTH, complete_secrets, load_secret_file, secret_names, write_secret_file
from pipeline.profiles import load_profile


def test_secret_names_follow_the_services():
    names = secret_names(load_profile("bookworm-zed"))
    assert {"placement_db_password", "placement_password", "nova_db_password", "metadata_secret"} <= set(names)
    assert "placement_password" not in secret_names(load_profile("xenial-newton"))


def test_complete_keeps_known_applies_fixed_generates_rest():
    profile = load_profile("bookworm-zed")
    result = complete_secrets(profile, known={"nova_password": "known-value"}, fixed={"admin_password": "fixed-value"})
    assert result["nova_password"] == "known-value"
    assert result["admin_password"] == "fixed-value"
    generated = [v for k, v in result.items() if k not in ("nova_password", "admin_password")]
    assert all(len(v) == SECRET_LENGTH and v.isalnum() for v in generated)
    assert len(set(generated)) == len(generated)


def test_secret_file_is_0600_and_round_trips(tmp_path):
    path = tmp_path / "appliance" / "secrets.yaml"
    write_secret_file(path, {"a": "b1234567"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_file(path) == {"a": "b1234567"}
    assert list(path.parent.iterdir()) == [path]
