# mig.sh: put this node's MIG layout (CONFIG_FILE, config SELECTED, for NVIDIA's nvidia-mig-parted) into
# effect. Run by `pulumi up` whenever the layout changes:
#   install the NVIDIA driver and MIG manager if missing; drain the node and wait for its jobs; apply the
#   MIG mode; if the mode stays pending (Ampere: the GPU needs a reset, which the hypervisor does not allow
#   under passthrough) reboot the VM once (never for the same layout twice) and let the boot finish the
#   job; otherwise create the instances, derive GRES from them, restart slurmd and return the node to
#   service (mig-gres.sh).
# mig.sh boot: what nvidia-mig-manager.service runs at every boot, before slurmd: apply mode and
#   instances again (Hopper and later forget the mode at every reboot). It never reboots: a mode still
#   pending at boot is reported by mig-gres.sh, and the node stays drained with that reason.
ACTION=${1:-apply}
REBOOT_MARKER=/var/lib/hyperscaler/mig-reboot

missing_tools() {
  local tool
  for tool in nvidia-smi nvidia-mig-parted; do
    command -v "$tool" >/dev/null || printf '%s ' "$tool"
  done
}

ensure_software() {
  [ -n "$(missing_tools)" ] || return 0
  [ -n "$REPO_NAME" ] || die "this node lacks $(missing_tools)and mig.software.repository is null: use an image" \
    "that carries the NVIDIA driver and nvidia-mig-parted, or set the repository"
  log "installing $PACKAGES from $REPO_URL"
  add_apt_repository
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086 # PACKAGES is a list of words
  apt-get -q -o DPkg::Lock::Timeout=600 update && apt-get -q -o DPkg::Lock::Timeout=600 install -y $PACKAGES
  [ -z "$(missing_tools)" ] || die "installed $PACKAGES, yet $(missing_tools)is still missing: check mig.software"
}

parted() { nvidia-mig-parted "$@" -f "$CONFIG_FILE" -c "$SELECTED"; }

mode_pending() {
  nvidia-smi --query-gpu=mig.mode.current,mig.mode.pending --format=csv,noheader | tr -d ' ' |
    awk -F, '$1 != $2 {found = 1} END {exit !found}'
}

apply_mode() {
  parted apply --mode-only --skip-reset
  if mode_pending; then
    # A reset makes a pending mode current where the GPU allows it (not under passthrough on Ampere).
    parted apply --mode-only || log "the GPU reset failed: the MIG mode stays pending"
  fi
}

reboot_once() {
  if [ "$(cat "$REBOOT_MARKER" 2>/dev/null)" = "$LAYOUT_KEY" ]; then
    scontrol update NodeName="$NODE_NAME" State=DRAIN \
      Reason="$MIG_MISMATCH_REASON: MIG mode still pending after the reboot for this layout" || true
    die "the MIG mode of $NODE_NAME is still pending after the reboot this layout already had: not rebooting" \
      "again; see nvidia-smi -q (MIG Mode), the node stays drained"
  fi
  have_systemd || die "the MIG mode needs a reboot to take effect and this node has no systemd to reboot it"
  install -d -m 0700 "$(dirname "$REBOOT_MARKER")"
  printf '%s\n' "$LAYOUT_KEY" > "$REBOOT_MARKER"
  log "the MIG mode is pending and the GPU cannot be reset from the guest: rebooting $NODE_NAME once;" \
    "nvidia-mig-manager.service creates the instances at boot and the node returns to service then"
  systemd-run --on-active=5 --unit=hyperscaler-mig-reboot systemctl reboot
  exit 0
}

# Derive GRES from the devices, (re)start slurmd when they changed, and drain or resume the node.
refresh() {
  local before after
  before=$(cat "$GRES_FILE" 2>/dev/null || true)
  "$GRES_SCRIPT" write
  after=$(cat "$GRES_FILE")
  if ! svc_running slurmd; then
    svc_start slurmd
  elif [ "$before" != "$after" ] || [ "${1:-}" = changed ]; then
    log "restarting slurmd: its MIG devices changed"
    svc_restart slurmd
  fi
  wait_for "slurmd" 30 svc_running slurmd
  "$GRES_SCRIPT" report
}

case "$ACTION" in
  boot)
    if [ -n "$(missing_tools)" ]; then
      log "$(missing_tools)missing: no MIG at this boot"
      exit 0
    fi
    if parted assert >/dev/null 2>&1; then
      log "the MIG layout is in place"
      exit 0
    fi
    # Never a reset or a reboot here: Ampere keeps its mode across reboots, Hopper needs no reset.
    parted apply --mode-only --skip-reset || log "nvidia-mig-parted could not set the MIG mode"
    if mode_pending; then
      log "the MIG mode is still pending: not creating instances (a reboot is needed)"
      exit 0
    fi
    parted apply || log "nvidia-mig-parted could not create the instances"
    exit 0
    ;;
  apply) ;;
  *) die "unknown action $ACTION: use apply or boot" ;;
esac

ensure_software
if have_systemd; then
  systemctl daemon-reload
  systemctl enable nvidia-mig-manager.service hyperscaler-mig-report.service
fi
if [ "$(applied_get mig)" = "$LAYOUT_KEY" ] && parted assert >/dev/null 2>&1; then
  log "the MIG layout is in place"
  refresh
  exit 0
fi
drain_for_mig "$NODE_NAME"
log "applying the MIG mode"
apply_mode
mode_pending && reboot_once
log "creating the MIG instances"
parted apply
rm -f "$REBOOT_MARKER"
applied_set mig "$LAYOUT_KEY"
refresh changed
log "MIG layout applied"
