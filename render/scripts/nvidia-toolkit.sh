# nvidia-toolkit.sh: the NVIDIA Container Toolkit in CDI mode on a GPU node. The CDI spec (CDI_SPEC)
# lists the node's GPUs (MIG instances included); the unit CDI_UNIT makes it again at every boot, after
# the driver and the MIG manager, and it is made now when the driver answers. Docker reaches it through
# the `nvidia` runtime of daemon.json (the docker step), Enroot and Apptainer through the same spec.
ensure_toolkit() {
  command -v nvidia-ctk >/dev/null && return 0
  [ -n "$REPO_NAME" ] || die "nvidia-ctk is missing and containers.nvidia_toolkit.repository is null:" \
    "use an image that carries the NVIDIA Container Toolkit, or set the repository"
  log "installing $PACKAGES from $REPO_URL"
  add_apt_repository
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086 # PACKAGES is a list of words
  apt-get -q -o DPkg::Lock::Timeout=600 update && apt-get -q -o DPkg::Lock::Timeout=600 install -y $PACKAGES
  command -v nvidia-ctk >/dev/null || die "installed $PACKAGES, yet nvidia-ctk is missing"
}

ensure_toolkit
# CDI mode: the runtime injects exactly the devices a container names (nvidia.com/gpu=0, =all, MIG ids).
nvidia-ctk config --in-place --set nvidia-container-runtime.mode=cdi
if have_systemd; then
  systemctl daemon-reload
  systemctl enable "$(basename "$CDI_UNIT")" >/dev/null
fi
if nvidia-smi -L >/dev/null 2>&1; then
  install -d -m 0755 "$(dirname "$CDI_SPEC")"
  nvidia-ctk cdi generate --output="$CDI_SPEC" >/dev/null
  log "CDI devices: $(nvidia-ctk cdi list 2>/dev/null | grep -c '^nvidia.com/' || true)"
else
  log "the NVIDIA driver does not answer yet: the CDI spec is made at the next boot ($(basename "$CDI_UNIT"))"
fi
[ "$DOCKER" = 0 ] || command -v nvidia-container-runtime >/dev/null ||
  die "nvidia-container-runtime is missing: Docker's nvidia runtime would fail"
log "NVIDIA Container Toolkit ready (CDI mode)"
