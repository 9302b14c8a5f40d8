#!/bin/bash
#
# setmac.sh - set the MAC of a qeth network interface from the DPM token for
# its device in the kernel cmdline:
#
#     <devno>,<port>[,<mac>];
#
# Usage:
#     setmac.sh <bus-id> [<interface>]   e.g. setmac.sh 0.0.8001 encc8001
#     setmac.sh <interface>              e.g. setmac.sh encc8001
#
# Called by the udev rule 80-setmac.rules when a qeth interface is added.
# The interface is found from the bus id (sysfs if_name) or the bus id from
# the interface (sysfs device link) when only one is given. Only locally
# administered unicast MACs are set; a token without a MAC, or no token for
# the device, leaves the MAC alone.
#
# Exit status: 0 on success or nothing to do, 1 if the MAC could not be set,
# was refused, the arguments were wrong, or any token in the cmdline was
# malformed.

set -o nounset -o pipefail
: "${PATH:=/usr/sbin:/usr/bin:/sbin:/bin}"
DPM_LOG_TAG=${DPM_LOG_TAG:-setmac}

dpm_lib_dir() {
    local bin_dir=.
    [[ ${BASH_SOURCE[0]} == */* ]] && bin_dir=${BASH_SOURCE[0]%/*}
    printf '%s\n' "$bin_dir/../lib/dpm-guest-tools"
}

# shellcheck source-path=SCRIPTDIR source=../lib/dpm-guest-tools/dpm_guest_tools.sh
if ! source "$(dpm_lib_dir)/dpm_guest_tools.sh"; then
    printf '%s: cannot load %s\n' "$DPM_LOG_TAG" "$(dpm_lib_dir)/dpm_guest_tools.sh" >&2
    exit 1
fi

usage() {
    dpm_error "usage: setmac.sh <bus-id> [<interface>] | setmac.sh <interface>"
}

main() {
    local busid iface index mac rc=0
    if (($# < 1 || $# > 2)); then
        usage
        return 1
    fi
    if [[ ${1,,} =~ $DPM_BUSID_RE ]]; then
        busid=${1,,}
        iface=${2:-}
        if [[ -z $iface ]] && ! iface=$(dpm_interface_of_busid "$busid"); then
            dpm_error "no network interface found for $busid"
            return 1
        fi
    elif (($# == 1)) && [[ $1 =~ $DPM_IFNAME_RE ]]; then
        iface=$1
        if ! busid=$(dpm_busid_of_interface "$iface") || ! [[ ${busid,,} =~ $DPM_BUSID_RE ]]; then
            dpm_error "no qeth bus id found for interface $(dpm_printable "$iface")"
            return 1
        fi
        busid=${busid,,}
    else
        usage
        return 1
    fi
    if ! [[ $iface =~ $DPM_IFNAME_RE ]]; then
        dpm_error "invalid interface name '$(dpm_printable "$iface")'"
        return 1
    fi

    dpm_parse_cmdline || rc=1
    if ! index=$(dpm_token_index "${busid#0.0.}"); then
        dpm_info "no token for $busid in the kernel cmdline, MAC of $iface left alone"
        return "$rc"
    fi
    mac=${DPM_TOKEN_MACS[index]}
    if [[ -z $mac ]]; then
        dpm_info "token for $busid has no MAC, MAC of $iface left alone"
    elif ! dpm_is_local_unicast_mac "$mac"; then
        dpm_error "MAC $(dpm_format_mac "$mac") for $busid refused: not a locally administered unicast address"
        rc=1
    else
        dpm_set_mac "$iface" "$mac" || rc=1
    fi
    return "$rc"
}

main "$@"
