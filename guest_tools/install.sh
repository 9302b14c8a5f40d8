#!/bin/bash
#
# install.sh DESTDIR - install the DPM guest image tools below DESTDIR
# (empty: the running system's root). Used by `make install-guest-tools`.
#
# Scripts get mode 0755; the library, systemd unit and udev rule 0644.
# Enable afterwards, inside the image:
#     systemctl enable autoconfigure_networking.service

set -o errexit -o nounset -o pipefail

if (($# != 1)); then
    printf 'usage: %s DESTDIR\n' "${0##*/}" >&2
    exit 2
fi
destdir=${1%/}
src_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

# source path (relative to guest_tools/), mode
files=(
    usr/bin/autoconfigure_networking.sh 0755
    usr/bin/setmac.sh 0755
    usr/lib/dpm-guest-tools/dpm_guest_tools.sh 0644
    usr/lib/systemd/system/autoconfigure_networking.service 0644
    etc/udev/rules.d/80-setmac.rules 0644
)

for ((i = 0; i < ${#files[@]}; i += 2)); do
    path=${files[i]}
    mode=${files[i + 1]}
    install -D -m "$mode" -- "$src_dir/$path" "$destdir/$path"
    printf 'installed %s/%s (%s)\n' "$destdir" "$path" "$mode"
done
