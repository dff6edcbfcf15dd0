# Install the node's packages that its image does not already carry; a prebuilt role image has them all
# and nothing is installed. Debian's own first (PACKAGES); then, when REPO_NAME is set, a third-party
# repository whose signing key must have the pinned fingerprint, and its packages (REPO_PACKAGES).
# Daemons are not started by the installation (policy-rc.d): the steps that follow configure them first.
missing_of() {
  local package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$' || printf '%s\n' "$package"
  done
}

# What this run creates and must remove however it ends.
cleanup=()
trap 'rm -f "${cleanup[@]}"' EXIT
policy=/usr/sbin/policy-rc.d
guard_services() {
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# hyperscaler: no service starts while packages are installed\nexit 101\n' > "$policy"
    chmod 0755 "$policy"
    cleanup+=("$policy")
  fi
}
export DEBIAN_FRONTEND=noninteractive
# cloud-init may still be running apt at first boot: wait for the dpkg lock instead of failing.
apt_get() { apt-get -q -o DPkg::Lock::Timeout=600 "$@"; }

install_missing() {
  local what=$1
  shift
  [ "$#" -gt 0 ] || return 0
  log "installing $what: $*"
  guard_services
  apt_get update || die "apt-get update failed: is the $what repository reachable from this node?"
  apt_get install -y --no-install-recommends "$@"
}

# shellcheck disable=SC2086 # PACKAGES is a list of words
mapfile -t missing < <(missing_of $PACKAGES)
install_missing "Debian" "${missing[@]}"

if [ -n "$REPO_NAME" ]; then
  add_apt_repository
  # shellcheck disable=SC2086 # REPO_PACKAGES is a list of words
  mapfile -t missing < <(missing_of $REPO_PACKAGES)
  install_missing "$REPO_NAME" "${missing[@]}"
fi
log "packages ready"
