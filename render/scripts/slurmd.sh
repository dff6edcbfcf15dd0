# Start slurmd, or restart it when this node's definition, gres.conf or cgroup.conf changed
# (scontrol reconfigure does not re-read GRES or node hardware).
install -d -m 0755 /var/spool/slurmd /var/log/slurm
if svc_running slurmd; then
  if [ "$(applied_get slurmd)" != "$RESTART_KEY" ]; then
    log "node definition changed: restarting slurmd"
    svc_restart slurmd
  fi
else
  svc_start slurmd
fi
wait_for "slurmd" 30 svc_running slurmd
applied_set slurmd "$RESTART_KEY"
log "slurmd ready"
