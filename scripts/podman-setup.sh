#!/usr/bin/env bash
# Prepares podman on a Debian 12 machine (as root) to build and run Torii's
# container images offline, and prints the environment to use it:
#
#   1. a containers.conf of our own, passed with CONTAINERS_CONF so that
#      nothing under /etc is changed: runc as the runtime, cgroupfs (no
#      systemd here), events to a file (no journald), and ulimits the host
#      can grant (podman's default nofile=1048576 exceeds a lowered hard
#      limit and every container start would fail);
#   2. the base image debian:bookworm-slim, made with debootstrap from the
#      host's Debian mirror and `podman import`, because no image registry
#      can be reached. Skipped when the image exists (TORII_REBUILD_BASE=1
#      forces it).
#
# Usage: eval "$(scripts/podman-setup.sh)"    # exports CONTAINERS_CONF
# Needs: podman runc debootstrap (scripts/install-deps.sh installs them).
set -euo pipefail

state_dir="${TORII_PODMAN_DIR:-/var/lib/torii-podman}"
base_image="docker.io/library/debian:bookworm-slim"

log() { printf 'podman-setup: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (rootless podman needs subuid ranges this setup does not make)"
for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh"
done

mkdir -p "$state_dir"
conf="$state_dir/containers.conf"
nofile_hard=$(ulimit -Hn)
nproc_hard=$(ulimit -Hu)
# Stay within the hard limits of this shell: runc cannot raise them.
nofile=20000
nproc=4096
[[ $nofile_hard != unlimited && $nofile_hard -lt $nofile ]] && nofile=$nofile_hard
[[ $nproc_hard != unlimited && $nproc_hard -lt $nproc ]] && nproc=$nproc_hard
cgroup_manager="cgroupfs"
events_logger="file"
# With systemd as init, let podman use it (health check timers, cgroups).
if [[ -d /run/systemd/system ]]; then
  cgroup_manager=systemd
  events_logger=journald
fi
cat >"$conf.tmp" <<EOF
# Written by scripts/podman-setup.sh; used through CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]

[engine]
runtime = "runc"
cgroup_manager = "${cgroup_manager}"
events_logger = "${events_logger}"
EOF
mv "$conf.tmp" "$conf"
export CONTAINERS_CONF="$conf"

if [[ "${TORII_REBUILD_BASE:-0}" != 1 ]] && podman image exists "$base_image"; then
  log "base image $base_image present, reused"
else
  # The host's own mirror (the one its apt uses), else Debian's default.
  mirror=""
  if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  mirror="${TORII_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"
  mirror="${mirror%/}"
  log "making $base_image with debootstrap from $mirror (about 30 s)"
  rootfs=$(mktemp -d /var/tmp/torii-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$state_dir/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see $state_dir/debootstrap.log"

  # Make it look like the official debian:bookworm-slim: deb822 sources for
  # bookworm, -updates and -security, and no docs, man pages or locales
  # (now or in packages installed later).
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${mirror}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror}-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # A snapshot mirror serves Release files past their Valid-Until; if the
  # host's apt is told to accept that, the image's apt must be too.
  for f in /etc/apt/apt.conf.d/*; do
    [[ -f $f ]] && grep -q 'Check-Valid-Until' "$f" && cp "$f" "$rootfs/etc/apt/apt.conf.d/"
  done
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/slim" <<'EOF'
APT::AutoRemove::SuggestsImportant "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,info,groff,lintian,linda,locale}/* \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
  # Mount points and files the runtime provides.
  : >"$rootfs/etc/resolv.conf"
  : >"$rootfs/etc/hostname"

  tar --numeric-owner -C "$rootfs" -c . \
    | podman import --change 'CMD ["bash"]' --message "debootstrap minbase bookworm ($mirror)" \
        - "$base_image" >/dev/null
  podman tag "$base_image" localhost/debian:bookworm-slim
  rm -rf "$rootfs"
  trap - EXIT
  log "base image $base_image made ($(podman image inspect --format '{{.Size}}' "$base_image") bytes)"
fi

printf 'export CONTAINERS_CONF=%q\n' "$conf"
