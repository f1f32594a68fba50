"""Booting built appliances locally: systemd-nspawn (fast path) and qemu (full path)."""
