# Install the role's Debian packages that the image does not already carry; a prebuilt role image has
# them all and nothing is installed. Daemons are not started by the installation (policy-rc.d): the
# steps that follow configure them first, then start them.
missing=()
for package in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  log "all $(wc -w <<<"$PACKAGES") packages are installed"
  exit 0
fi
log "installing ${missing[*]}"
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# hyperscaler: no service starts while packages are installed\nexit 101\n' > "$policy"
  chmod 0755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
# cloud-init may still be running apt at first boot: wait for the dpkg lock instead of failing.
apt_get() { apt-get -q -o DPkg::Lock::Timeout=600 "$@"; }
apt_get update
apt_get install -y --no-install-recommends "${missing[@]}"
log "installed ${missing[*]}"
