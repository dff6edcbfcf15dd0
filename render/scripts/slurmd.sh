# Start slurmd configless (it fetches slurm.conf, gres.conf and cgroup.conf from slurmctld, as
# /etc/default/slurmd says), or restart it when what it puts into effect on this node changed: its
# hardware or GRES, cgroup.conf, a restart-class key, or its options. `scontrol reconfigure` on the
# controller brings every other change, node additions included, without a restart.
install -d -m 0755 /var/spool/slurmd /var/log/slurm
# Files an earlier release pushed here would shadow the fetched configuration for client commands.
for file in $STALE_FILES; do
  if [ -f "$file" ] && grep -q '^# Managed by hyperscaler' "$file"; then
    log "removing $file: slurmd fetches it from slurmctld now"
    rm -f "$file"
  fi
done
key="$RESTART_KEY $(sha256sum /etc/default/slurmd | cut -d' ' -f1)"
if svc_running slurmd; then
  if [ "$(applied_get slurmd)" != "$key" ]; then
    log "node definition or options changed: restarting slurmd"
    svc_restart slurmd
  fi
else
  svc_start slurmd
fi
wait_for "slurmd" 30 svc_running slurmd
applied_set slurmd "$key"
log "slurmd ready"
