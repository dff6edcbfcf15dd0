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
  keyring="/usr/share/keyrings/hyperscaler-$REPO_NAME.gpg"
  list="/etc/apt/sources.list.d/hyperscaler-$REPO_NAME.list"
  # The fingerprint of each primary key in a key file (a subkey's fpr line follows its sub line, not pub).
  fingerprints() {
    gpg --batch --no-default-keyring --show-keys --with-colons "$1" 2>/dev/null |
      awk -F: '$1 == "pub" { primary = 1; next } $1 == "fpr" { if (primary) print $10; primary = 0 }'
  }
  if [ "$(fingerprints "$keyring" 2>/dev/null | paste -sd' ' -)" != "$REPO_FINGERPRINT" ]; then
    key=$(mktemp)
    cleanup+=("$key" "$keyring.tmp")
    if [ -n "$REPO_KEY" ]; then
      printf '%s\n' "$REPO_KEY" > "$key"
    else
      curl -fsSL --proto '=https' --tlsv1.2 --max-time 60 "$REPO_KEY_URL" -o "$key" ||
        die "cannot fetch the $REPO_NAME signing key from $REPO_KEY_URL"
    fi
    found=$(fingerprints "$key" | paste -sd' ' -)
    [ "$found" = "$REPO_FINGERPRINT" ] ||
      die "the $REPO_NAME signing key has fingerprint ${found:-none}, not the pinned $REPO_FINGERPRINT: refusing it"
    if grep -q -- '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$key"; then
      gpg --batch --yes --dearmor -o "$keyring.tmp" "$key"
    else
      cp "$key" "$keyring.tmp"  # already binary, as some repositories serve it
    fi
    chmod 0644 "$keyring.tmp"
    mv -f "$keyring.tmp" "$keyring"
    log "$REPO_NAME signing key $REPO_FINGERPRINT installed"
  fi
  line="deb [signed-by=$keyring] $REPO_URL $REPO_SUITE $REPO_COMPONENTS"
  if [ "$(cat "$list" 2>/dev/null)" != "$line" ]; then
    printf '%s\n' "$line" > "$list.tmp"
    mv -f "$list.tmp" "$list"
    log "$REPO_NAME repository: $REPO_URL $REPO_SUITE"
  fi
  # shellcheck disable=SC2086 # REPO_PACKAGES is a list of words
  mapfile -t missing < <(missing_of $REPO_PACKAGES)
  install_missing "$REPO_NAME" "${missing[@]}"
fi
log "packages ready"
