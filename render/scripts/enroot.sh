# enroot.sh: Enroot and the Pyxis SPANK plugin (PYXIS) on a compute node, from the stack's repository when
# either is missing. plugstack.conf names Pyxis `optional`, so slurmd runs whether or not it is here.
missing() {
  command -v enroot >/dev/null || printf 'enroot '
  [ -e "$PYXIS" ] || printf '%s ' "$PYXIS"
}

if [ -n "$(missing)" ]; then
  [ -n "$REPO_NAME" ] || die "this node lacks $(missing)and containers.enroot.repository is null: use an image" \
    "that carries Enroot and Pyxis (built against this SLURM), or set the repository"
  log "installing $PACKAGES from $REPO_URL"
  add_apt_repository
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086 # PACKAGES is a list of words
  apt-get -q -o DPkg::Lock::Timeout=600 update && apt-get -q -o DPkg::Lock::Timeout=600 install -y $PACKAGES
  [ -z "$(missing)" ] || die "installed $PACKAGES, yet $(missing)is still missing: check containers.enroot"
fi
log "enroot $(enroot version) and Pyxis ready"
