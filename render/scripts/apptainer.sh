# apptainer.sh: Apptainer on a compute node, from the stack's repository when it is missing.
if ! command -v apptainer >/dev/null; then
  [ -n "$REPO_NAME" ] || die "apptainer is missing and containers.apptainer.repository is null: use an image" \
    "that carries Apptainer, or set the repository"
  log "installing $PACKAGES from $REPO_URL"
  add_apt_repository
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086 # PACKAGES is a list of words
  apt-get -q -o DPkg::Lock::Timeout=600 update && apt-get -q -o DPkg::Lock::Timeout=600 install -y $PACKAGES
  command -v apptainer >/dev/null || die "installed $PACKAGES, yet apptainer is missing: check containers.apptainer"
fi
log "$(apptainer --version) ready"
