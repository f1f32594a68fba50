export APPLIANCE_SERVICES="${APPLIANCE_SERVICES:-} dashboard"
# openstack-dashboard's postinst compresses Horizon's SCSS with pyScss. For some orders of its
# templates pyScss 1.4.0 fails on serial_console.scss ("Found 'inline-blo'"), and Django walks
# them in an order that follows Python's string hashing, which is random per process: a build
# would fail now and then for no change of ours. A fixed seed makes the order, and the build, the
# same every time; the seed is checked by every image build (the postinst fails the install).
export PYTHONHASHSEED="${DIB_APPLIANCE_DASHBOARD_PYTHONHASHSEED:-0}"
