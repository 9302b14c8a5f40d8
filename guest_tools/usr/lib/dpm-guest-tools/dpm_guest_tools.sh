# shellcheck shell=bash
#
# dpm_guest_tools.sh - functions shared by autoconfigure_networking.sh and
# setmac.sh, the DPM guest image tools. Sourced, never executed; defines
# functions and three arrays, runs nothing.
#
# The backend writes one token per NIC into the partition's kernel cmdline
# (HMC property boot-os-specific-parameters):
#
#     <devno>,<port>[,<mac>];
#
#   devno  4 hex digits, the device number of the NIC's first subchannel;
#          the qeth device is 0.0.<devno> (compared case-insensitively)
#   port   adapter port, 0..3
#   mac    12 hex digits without colons; optional
#
# Tokens are separated by whitespace or directly adjacent after the ';'
# ("8001,0,0a1b2c3d4e5f; 8002,1;" or "0001,1,0a0000000011;0004,0;"). A token
# is recognised only at a token boundary: at the start of a whitespace
# separated word, or right after the ';' ending a token. Words holding other
# kernel parameters ("root=...", "foo=8001,0,0a0000000011;") are ignored.
#
# Nothing read from the cmdline is ever evaluated: it is split with `read`
# and string operations, and checked against the fixed patterns below.
#
# Environment:
#   DPM_ROOT_DIR        prefix for /proc and /sys paths (tests use a fake
#                       root); default: empty, the real root
#   DPM_LOG_TAG         syslog tag; default: dpm-guest-tools
#   DPM_SETTLE_TIMEOUT  seconds to wait for a grouped qeth device to appear
#                       in sysfs, integer 1..300; default: 10
#   PATH                where modprobe, udevadm, ip and logger are found

export LC_ALL=C

# Fixed patterns; never built from input.
readonly DPM_TOKEN_RE='^([[:xdigit:]]{4}),([0-3])(,([[:xdigit:]]{12}))?$'
readonly DPM_TOKEN_START_RE='^[[:xdigit:]]{4},'
# The next two are used by setmac.sh.
# shellcheck disable=SC2034
readonly DPM_BUSID_RE='^0\.0\.[[:xdigit:]]{4}$'
# shellcheck disable=SC2034
readonly DPM_IFNAME_RE='^[[:alnum:]_][[:alnum:]_.:@-]{0,14}$'
readonly DPM_CMDLINE=/proc/cmdline
readonly DPM_QETH_DRIVER=/sys/bus/ccwgroup/drivers/qeth
readonly DPM_CCWGROUP_DEVICES=/sys/bus/ccwgroup/devices
readonly DPM_CCW_DEVICES=/sys/bus/ccw/devices
readonly DPM_NET_CLASS=/sys/class/net
readonly DPM_LOG_MAX=64

# Parsed tokens, index-aligned; filled by dpm_parse_cmdline.
DPM_TOKEN_DEVNOS=()  # lower case, 4 hex digits
DPM_TOKEN_PORTS=()   # 0..3
DPM_TOKEN_MACS=()    # lower case, 12 hex digits, or empty

# dpm_path PATH: print PATH below DPM_ROOT_DIR.
dpm_path() {
    printf '%s%s\n' "${DPM_ROOT_DIR:-}" "$1"
}

# dpm_printable TEXT: print TEXT shortened to DPM_LOG_MAX characters, with
# anything unprintable replaced by '?', for quoting input in log messages.
dpm_printable() {
    local text=${1//[^[:print:]]/?}
    if ((${#text} > DPM_LOG_MAX)); then
        text="${text:0:DPM_LOG_MAX}..."
    fi
    printf '%s\n' "$text"
}

# dpm_log PRIORITY MESSAGE: log MESSAGE to syslog/journal with `logger`;
# PRIORITY is a syslog level (info, warning, err). Errors and warnings also
# go to stderr; everything goes to stderr when logger is missing or fails.
dpm_log() {
    local priority=$1 message=$2 tag=${DPM_LOG_TAG:-dpm-guest-tools}
    local logged=no
    if command -v logger >/dev/null 2>&1 &&
        logger -t "$tag" -p "user.$priority" -- "$message" 2>/dev/null; then
        logged=yes
    fi
    if [[ $logged == no || $priority != info ]]; then
        printf '%s: %s: %s\n' "$tag" "$priority" "$message" >&2
    fi
}

dpm_info() { dpm_log info "$1"; }
dpm_error() { dpm_log err "$1"; }

# dpm_add_token SEGMENT: check one token (without its ';') and append it to
# the DPM_TOKEN_* arrays. Returns 1, after logging why, if it is malformed
# or names a devno seen before.
dpm_add_token() {
    local segment=$1 devno port mac i
    if ! [[ $segment =~ $DPM_TOKEN_RE ]]; then
        dpm_error "malformed token '$(dpm_printable "$segment")' skipped: expected <devno>,<port>[,<mac>]; with a 4 hex digit devno, a port 0-3 and a 12 hex digit mac"
        return 1
    fi
    devno=${BASH_REMATCH[1],,}
    port=${BASH_REMATCH[2]}
    mac=${BASH_REMATCH[4],,}
    for ((i = 0; i < ${#DPM_TOKEN_DEVNOS[@]}; i++)); do
        if [[ ${DPM_TOKEN_DEVNOS[i]} == "$devno" ]]; then
            dpm_error "duplicate token for devno $devno skipped: '$segment'"
            return 1
        fi
    done
    DPM_TOKEN_DEVNOS+=("$devno")
    DPM_TOKEN_PORTS+=("$port")
    DPM_TOKEN_MACS+=("$mac")
}

# dpm_parse_word WORD: add the tokens of one whitespace separated cmdline
# word. A word not starting with a token ("root=...", "quiet") is ignored.
# Returns 1 if any token in it was malformed; the others are still added.
dpm_parse_word() {
    local rest=$1 segment first=yes terminated rc=0
    while [[ -n $rest ]]; do
        segment=${rest%%;*}
        if [[ $segment == "$rest" ]]; then
            terminated=no
            rest=
        else
            terminated=yes
            rest=${rest#*;}
        fi
        if [[ $first == yes ]]; then
            first=no
            # Another kernel parameter, not a token boundary: ignore it all.
            if [[ $segment == *=* ]] ||
                ! [[ $terminated == yes || $segment =~ $DPM_TOKEN_START_RE ]]; then
                return 0
            fi
        fi
        if [[ $terminated == no ]]; then
            dpm_error "malformed token '$(dpm_printable "$segment")' skipped: missing the terminating ';'"
            rc=1
        elif ! dpm_add_token "$segment"; then
            rc=1
        fi
    done
    return "$rc"
}

# dpm_parse_cmdline: fill DPM_TOKEN_* from DPM_ROOT_DIR/proc/cmdline.
# Returns 1 if the cmdline is unreadable or any token was malformed; the
# well-formed tokens are kept either way.
dpm_parse_cmdline() {
    local cmdline words i rc=0 IFS=$' \t\n'
    cmdline=$(dpm_path "$DPM_CMDLINE")
    DPM_TOKEN_DEVNOS=() DPM_TOKEN_PORTS=() DPM_TOKEN_MACS=()
    if ! [[ -r $cmdline ]]; then
        dpm_error "cannot read $cmdline"
        return 1
    fi
    words=()
    read -r -a words <"$cmdline" || true
    for ((i = 0; i < ${#words[@]}; i++)); do
        dpm_parse_word "${words[i]}" || rc=1
    done
    return "$rc"
}

# dpm_token_index DEVNO: print the DPM_TOKEN_* index of DEVNO (any case);
# returns 1 if no token names it.
dpm_token_index() {
    local devno=${1,,} i
    for ((i = 0; i < ${#DPM_TOKEN_DEVNOS[@]}; i++)); do
        if [[ ${DPM_TOKEN_DEVNOS[i]} == "$devno" ]]; then
            printf '%s\n' "$i"
            return 0
        fi
    done
    return 1
}

# dpm_devno_plus DEVNO N: print the devno N above DEVNO, 4 lower case hex
# digits; returns 1 past ffff or if DEVNO is not 4 hex digits or N not 0..9.
dpm_devno_plus() {
    [[ $1 =~ ^[[:xdigit:]]{4}$ && $2 =~ ^[0-9]$ ]] || return 1
    local next=$((16#$1 + $2))
    ((next <= 0xffff)) || return 1
    printf '%04x\n' "$next"
}

# dpm_sysfs_write PATH VALUE: write VALUE to the sysfs attribute PATH, which
# must exist. Returns 1, after logging, on failure.
dpm_sysfs_write() {
    local path=$1 value=$2
    if ! [[ -e $path ]]; then
        dpm_error "cannot write '$value' to $path: no such attribute"
        return 1
    fi
    if ! { printf '%s\n' "$value" >"$path"; } 2>/dev/null; then
        dpm_error "cannot write '$value' to $path: write failed"
        return 1
    fi
}

# dpm_settle_timeout: print DPM_SETTLE_TIMEOUT if valid (1..300), else 10.
dpm_settle_timeout() {
    local timeout=${DPM_SETTLE_TIMEOUT:-10}
    if ! [[ $timeout =~ ^[0-9]{1,3}$ ]] || ((10#$timeout < 1 || 10#$timeout > 300)); then
        timeout=10
    fi
    printf '%d\n' "$((10#$timeout))"
}

# dpm_wait_for_path PATH: let udev settle, then wait up to the settle timeout
# for PATH to exist. Returns 1 if it never does.
dpm_wait_for_path() {
    local path=$1 timeout tries
    timeout=$(dpm_settle_timeout)
    if command -v udevadm >/dev/null 2>&1; then
        udevadm settle --timeout="$timeout" >/dev/null 2>&1 || true
    fi
    for ((tries = timeout * 10; tries > 0; tries--)); do
        [[ -e $path ]] && return 0
        sleep 0.1
    done
    [[ -e $path ]]
}

# dpm_ensure_qeth_driver: load the qeth driver (and with it ccwgroup) unless
# its group attribute is already there. Returns 1 if it stays missing.
dpm_ensure_qeth_driver() {
    local group
    group=$(dpm_path "$DPM_QETH_DRIVER/group")
    [[ -e $group ]] && return 0
    dpm_info "qeth driver not loaded, running modprobe qeth"
    if ! modprobe qeth; then
        dpm_error "modprobe qeth failed"
        return 1
    fi
    if ! [[ -e $group ]]; then
        dpm_error "modprobe qeth succeeded but $group does not exist"
        return 1
    fi
}

# dpm_configure_qeth DEVNO PORT: group the subchannels DEVNO, DEVNO+1 and
# DEVNO+2 into the qeth device 0.0.DEVNO, set it to layer2 on PORT and set
# it online. An existing device is left alone. Returns 1, after logging, on
# failure.
dpm_configure_qeth() {
    local devno=${1,,} port=$2 busid device offset next ccw subchannels=
    busid=0.0.$devno
    device=$(dpm_path "$DPM_CCWGROUP_DEVICES/$busid")
    if [[ -e $device ]]; then
        dpm_info "qeth device $busid already exists, skipped"
        return 0
    fi
    for offset in 0 1 2; do
        if ! next=$(dpm_devno_plus "$devno" "$offset"); then
            dpm_error "cannot configure $busid: devno $devno+$offset is beyond ffff"
            return 1
        fi
        ccw=$(dpm_path "$DPM_CCW_DEVICES/0.0.$next")
        if ! [[ -e $ccw ]]; then
            dpm_error "cannot configure $busid: ccw device 0.0.$next not found ($ccw)"
            return 1
        fi
        subchannels+="${subchannels:+,}0.0.$next"
    done
    dpm_sysfs_write "$(dpm_path "$DPM_QETH_DRIVER/group")" "$subchannels" || return 1
    if ! dpm_wait_for_path "$device"; then
        dpm_error "qeth device $busid did not appear after grouping $subchannels"
        return 1
    fi
    dpm_sysfs_write "$device/layer2" 1 || return 1
    dpm_sysfs_write "$device/portno" "$port" || return 1
    dpm_sysfs_write "$device/online" 1 || return 1
    dpm_info "qeth device $busid configured: layer2, port $port, online"
}

# dpm_is_local_unicast_mac MAC: true if MAC (12 hex digits) is a locally
# administered unicast address: bit 1 of the first octet set, bit 0 clear.
# That is the first octet's low hex digit being 2, 6, a or e.
dpm_is_local_unicast_mac() {
    [[ ${1:1:1} == [26aeAE] ]]
}

# dpm_format_mac MAC: print 12 hex digits as aa:bb:cc:dd:ee:ff.
dpm_format_mac() {
    local mac=${1,,}
    printf '%s:%s:%s:%s:%s:%s\n' "${mac:0:2}" "${mac:2:2}" "${mac:4:2}" \
        "${mac:6:2}" "${mac:8:2}" "${mac:10:2}"
}

# dpm_busid_of_interface IFACE: print the bus id of the device behind the
# network interface IFACE, from its sysfs "device" link; returns 1 if none.
dpm_busid_of_interface() {
    local link target
    link=$(dpm_path "$DPM_NET_CLASS/$1/device")
    target=$(readlink -- "$link" 2>/dev/null) || return 1
    target=${target%/}
    printf '%s\n' "${target##*/}"
}

# dpm_interface_of_busid BUSID: print the network interface of the qeth
# device BUSID, from its sysfs if_name attribute; returns 1 if none.
dpm_interface_of_busid() {
    local if_name name
    if_name=$(dpm_path "$DPM_CCWGROUP_DEVICES/$1/if_name")
    [[ -r $if_name ]] || return 1
    read -r name <"$if_name" || [[ -n ${name:-} ]] || return 1
    printf '%s\n' "$name"
}

# dpm_set_mac IFACE MAC: set the address of IFACE to MAC (12 hex digits).
# Returns 1, after logging, on failure.
dpm_set_mac() {
    local iface=$1 address
    address=$(dpm_format_mac "$2")
    if ! ip link set dev "$iface" address "$address"; then
        dpm_error "cannot set the MAC of $iface to $address: ip link failed"
        return 1
    fi
    dpm_info "MAC of $iface set to $address"
}
