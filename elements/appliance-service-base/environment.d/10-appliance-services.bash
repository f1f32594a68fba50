# Service elements append their name here (environment.d files are sourced in order).
export APPLIANCE_SERVICES=${APPLIANCE_SERVICES:-}
