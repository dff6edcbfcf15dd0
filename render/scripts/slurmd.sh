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
defaults=/etc/default/slurmd
wanted="# Managed by hyperscaler: slurmd fetches its configuration from slurmctld.
SLURMD_OPTIONS=\"--conf-server $CONF_SERVER\""
if [ "$(cat "$defaults" 2>/dev/null)" != "$wanted" ]; then
  printf '%s\n' "$wanted" > "$defaults.tmp"
  mv -f "$defaults.tmp" "$defaults"
fi
# Debian's slurmd.service starts only when /etc/slurm/slurm.conf exists (ConditionPathExists), and a
# configless node never has one: systemd would skip the start and report nothing. An empty
# ConditionPathExists= resets the unit's conditions (systemd.unit(5)).
if have_systemd; then
  dropin=/etc/systemd/system/slurmd.service.d/hyperscaler-configless.conf
  wanted_dropin="# Managed by hyperscaler: configless slurmd has no /etc/slurm/slurm.conf.
[Unit]
ConditionPathExists="
  if [ "$(cat "$dropin" 2>/dev/null)" != "$wanted_dropin" ]; then
    install -d -m 0755 "${dropin%/*}"
    printf '%s\n' "$wanted_dropin" > "$dropin.tmp"
    mv -f "$dropin.tmp" "$dropin"
    systemctl daemon-reload
  fi
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
applied_set slurmd "$key"
log "slurmd ready"
