# --- SLURM helpers (render/scripts/slurm-lib.sh) ---
# drain_and_wait NODE: drain, then wait for the node's jobs up to DRAIN_TIMEOUT seconds.
drain_and_wait() {
  local node=$1
  if ! scontrol show node "$node" >/dev/null 2>&1; then
    log "$node is not known to SLURM: nothing to drain"
    return 0
  fi
  scontrol update NodeName="$node" State=DRAIN Reason="removed by hyperscaler"
  local deadline=$((SECONDS + DRAIN_TIMEOUT))
  while [ -n "$(squeue -h -w "$node" -o %i)" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "WARNING: $node still runs jobs after ${DRAIN_TIMEOUT}s; removing it anyway"
      break
    fi
    sleep 5
  done
  scontrol update NodeName="$node" State=DOWN Reason="removed by hyperscaler" || true
  log "$node drained"
}
# --- end of SLURM helpers ---
