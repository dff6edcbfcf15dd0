# --- SLURM helpers (render/scripts/slurm-lib.sh) ---
# The reason this program gives SLURM for a node it takes out; a node drained for any other reason (by an
# admin, by a health check) is never returned to service here.
readonly DRAIN_REASON="hyperscaler: node removed or replaced"

# drain_and_wait NODE: drain, then wait for the node's jobs up to DRAIN_TIMEOUT seconds, then mark it down.
drain_and_wait() {
  local node=$1
  if ! scontrol show node "$node" >/dev/null 2>&1; then
    log "$node is not known to SLURM: nothing to drain"
    return 0
  fi
  scontrol update NodeName="$node" State=DRAIN Reason="$DRAIN_REASON"
  local deadline=$((SECONDS + DRAIN_TIMEOUT))
  while [ -n "$(squeue -h -w "$node" -o %i)" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "WARNING: $node still runs jobs after ${DRAIN_TIMEOUT}s; removing it anyway"
      break
    fi
    sleep 2
  done
  scontrol update NodeName="$node" State=DOWN Reason="$DRAIN_REASON" || true
  log "$node drained"
}

# resume_if_ours NODE: return NODE to service when it is out for DRAIN_REASON (its VM was replaced).
resume_if_ours() {
  local node=$1 reason
  if ! scontrol show node "$node" >/dev/null 2>&1; then
    log "$node is not known to SLURM: nothing to resume"
    return 0
  fi
  reason=$(sinfo -h -N -n "$node" -o '%E' | head -1)
  if [ "$reason" = "$DRAIN_REASON" ]; then
    scontrol update NodeName="$node" State=RESUME
    log "$node returned to service"
  fi
}
# --- end of SLURM helpers ---
