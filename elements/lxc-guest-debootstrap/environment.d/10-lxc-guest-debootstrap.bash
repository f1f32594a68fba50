export DIB_LXC_GUEST_RELEASE=${DIB_LXC_GUEST_RELEASE:-${DIB_RELEASE:-bookworm}}
export DIB_LXC_GUEST_MIRROR=${DIB_LXC_GUEST_MIRROR:-${DIB_DISTRIBUTION_MIRROR:-http://deb.debian.org/debian}}
export DIB_LXC_GUEST_PACKAGES=${DIB_LXC_GUEST_PACKAGES:-systemd-sysv openssh-server iproute2 ca-certificates cloud-init python3-cffi-backend sudo dbus}
# DIB's own defaults that the guest build relies on.
export DISTRO_NAME=${DISTRO_NAME:-debian}
export DIB_RELEASE=${DIB_RELEASE:-$DIB_LXC_GUEST_RELEASE}
export DIB_INIT_SYSTEM=systemd
