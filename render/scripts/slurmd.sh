# Start slurmd configless: it fetches slurm.conf, gres.conf and cgroup.conf from slurmctld at
# CONF_SERVER (--conf-server in /etc/default/slurmd, which Debian's slurmd.service reads). Restart it
# only when what it puts into effect on this node changed: its hardware or GRES, cgroup.conf, a
# restart-class key, or its options. `scontrol reconfigure` on the controller brings every other change,
# node additions included, without a restart.
install -d -m 0755 /var/spool/slurmd /var/log/slurm
# Files an earlier release pushed here would shadow the fetched configuration for client commands.
for file in $STALE_FILES; do
  if [ -f "$file" ] && grep -q '^# Managed by hyperscaler' "$file"; then
    log "removing $file: slurmd fetches it from slurmctld now"
    rm -f "$file"
  fi
done
# Debian's slurmd.service starts only if /etc/slurm/slurm.conf exists (ConditionPathExists), which a
# configless node never has: without this drop-in, systemd skips slurmd and reports success.
if have_systemd; then
  dropin=/etc/systemd/system/slurmd.service.d/hyperscaler-configless.conf
  wanted_unit="# Managed by hyperscaler: slurmd runs configless (no /etc/slurm/slurm.conf here).
[Unit]
ConditionPathExists="
  if [ "$(cat "$dropin" 2>/dev/null)" != "$wanted_unit" ]; then
    install -d -m 0755 "$(dirname "$dropin")"
    printf '%s\n' "$wanted_unit" > "$dropin.tmp"
    mv -f "$dropin.tmp" "$dropin"
    systemctl daemon-reload
  fi
fi
defaults=/etc/default/slurmd
wanted="# Managed by hyperscaler: slurmd fetches its configuration from slurmctld.
SLURMD_OPTIONS=\"--conf-server $CONF_SERVER\""
if [ "$(cat "$defaults" 2>/dev/null)" != "$wanted" ]; then
  printf '%s\n' "$wanted" > "$defaults.tmp"
  mv -f "$defaults.tmp" "$defaults"
fi
# gres.conf includes GRES_FILE once some node has MIG, and slurmd fails on a missing one: every node has it.
if [ ! -e "$GRES_FILE" ]; then
  install -d -m 0755 "$(dirname "$GRES_FILE")"
  printf '# Managed by hyperscaler: no MIG devices on this node.\n' > "$GRES_FILE"
fi
key="$RESTART_KEY $CONF_SERVER"
if svc_running slurmd; then
  if [ "$(applied_get slurmd)" != "$key" ]; then
    log "node definition or options changed: restarting slurmd"
    svc_restart slurmd
  fi
else
  svc_start slurmd
fi
wait_for "slurmd" 30 svc_running slurmd
# A MIG node drains or resumes itself by how its devices compare with its layout (mig-gres.sh).
if [ -x "$GRES_SCRIPT" ]; then
  "$GRES_SCRIPT" report
fi
applied_set slurmd "$key"
log "slurmd ready"
