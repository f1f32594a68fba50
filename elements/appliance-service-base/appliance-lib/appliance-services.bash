# Shared by the appliance service elements; sourced, not run.
# Inside the chroot this file is /tmp/in_target.d/appliance-lib/appliance-services.bash.

APPLIANCE_HELD_UNITS_FILE=/usr/share/appliance/held-units

# The selected services, each once, in the order the elements registered them.
appliance_services() {
    local seen=" " svc
    for svc in ${APPLIANCE_SERVICES}; do
        case "$seen" in *" $svc "*) continue ;; esac
        seen="$seen$svc "
        echo "$svc"
    done
}

# APPLIANCE_<KIND>_<SERVICE> as set by the build driver; fails when unset.
appliance_service_list() {
    local kind=$1 svc=$2 var
    var="APPLIANCE_${kind}_$(echo "$svc" | tr 'a-z-' 'A-Z_')"
    if [ -z "${!var+set}" ]; then
        echo "appliance: $var is not set; the build driver (pipeline.imagebuild) exports it from the profile" >&2
        return 1
    fi
    echo "${!var}"
}

# Feed debconf answers, one "owner question type value" per line on stdin.
appliance_preseed() {
    debconf-set-selections
}
