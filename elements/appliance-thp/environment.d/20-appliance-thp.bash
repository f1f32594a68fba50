# Appended once, whichever of this file and the bootloader element's default is read first,
# and however often the environment is read again in later phases.
case "${DIB_APPLIANCE_THP:-madvise}" in
    always|madvise|never) ;;
    *) echo "DIB_APPLIANCE_THP: expected always, madvise or never, got '${DIB_APPLIANCE_THP}'" >&2; exit 1 ;;
esac
_appliance_cmdline="${DIB_BOOTLOADER_DEFAULT_CMDLINE:-nofb nomodeset gfxpayload=text}"
case " ${_appliance_cmdline} " in
    *" transparent_hugepage="*) ;;
    *) _appliance_cmdline="${_appliance_cmdline} transparent_hugepage=${DIB_APPLIANCE_THP:-madvise}" ;;
esac
export DIB_BOOTLOADER_DEFAULT_CMDLINE="${_appliance_cmdline}"
unset _appliance_cmdline
