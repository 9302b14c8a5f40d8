#!/bin/bash
#
# autoconfigure_networking.sh - configure the qeth network devices named in
# the kernel cmdline by the DPM backend, one token per NIC:
#
#     <devno>,<port>[,<mac>];
#
# For each token the qeth device 0.0.<devno> is grouped from the subchannels
# devno, devno+1 and devno+2, set to layer2 on <port> and set online; devices
# that already exist are skipped. The MAC is set later by setmac.sh from the
# udev rule 80-setmac.rules when the network interface appears.
#
# Run by autoconfigure_networking.service before cloud-init; by hand:
#     /usr/bin/autoconfigure_networking.sh
#
# Exit status: 0 if every token was well formed and configured (or skipped
# as existing), 1 otherwise; a bad token never stops the others.

set -o nounset -o pipefail
: "${PATH:=/usr/sbin:/usr/bin:/sbin:/bin}"
DPM_LOG_TAG=${DPM_LOG_TAG:-autoconfigure_networking}

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

main() {
    local rc=0 i
    dpm_parse_cmdline || rc=1
    if ((${#DPM_TOKEN_DEVNOS[@]} == 0)); then
        dpm_info "no qeth device tokens in the kernel cmdline"
        return "$rc"
    fi
    dpm_ensure_qeth_driver || return 1
    for ((i = 0; i < ${#DPM_TOKEN_DEVNOS[@]}; i++)); do
        dpm_configure_qeth "${DPM_TOKEN_DEVNOS[i]}" "${DPM_TOKEN_PORTS[i]}" || rc=1
    done
    return "$rc"
}

main "$@"
