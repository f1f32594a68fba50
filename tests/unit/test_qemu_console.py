"""What `invoke boot --vm` looks for on the serial console."""

from pipeline.harness.qemu import FIRSTBOOT_STARTED, LOGIN_PROMPT

# As systemd printed it here: colour codes, and the unit name shortened with an ellipsis.
SHORTENED = ("         Starting \x1b[0;1;39mappliance-firstbo\u2026enders /etc, sets up OpenStack)...\r\r\n"
             .encode())


def test_first_boot_unit_is_seen_even_when_systemd_shortens_its_name():
    assert FIRSTBOOT_STARTED.search(SHORTENED)
    assert FIRSTBOOT_STARTED.search(b"[firstboot] (1/19) host: site config ...\n")
    assert not FIRSTBOOT_STARTED.search(b"Starting systemd-firstboot.service - First Boot Wizard...\n")


def test_login_prompt():
    assert LOGIN_PROMPT.search(b"Debian GNU/Linux 12 controller ttyS0\n\ncontroller login: ")
    # Seen here: the kernel wrote onto the prompt's line before anything else did.
    assert LOGIN_PROMPT.search(b"debian login: [   23.873863] I/O error, dev fd0, sector 0\r\n")
    assert not LOGIN_PROMPT.search(b"Last login: yesterday\n")
    assert not LOGIN_PROMPT.search(b"  Starting systemd-logind.service - User Login Management...\n")
