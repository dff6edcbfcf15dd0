# Alertmanager on the controller, its silences on the protected state volume. amtool checks the
# configuration before it takes effect; a changed configuration (or receiver secret) is re-read (SIGHUP),
# changed options restart it.
mountpoint -q "$STATE_MOUNT" || die "$STATE_MOUNT is not mounted: the state-volume step has not run"
install -d -o prometheus -g prometheus -m 0750 "$DATA_DIR"
amtool check-config "$CONFIG" >&2 || die "amtool rejects $CONFIG"
wanted="# Managed by hyperscaler: Alertmanager's options (render/monitoring.py).
ARGS=\"$DAEMON_ARGS\""
defaults=/etc/default/prometheus-alertmanager
if [ "$(cat "$defaults" 2>/dev/null)" != "$wanted" ]; then
  printf '%s\n' "$wanted" > "$defaults.tmp"
  mv -f "$defaults.tmp" "$defaults"
fi
svc_dropin prometheus-alertmanager.service "[Unit]
RequiresMountsFor=$STATE_MOUNT"
args_key=$(printf '%s' "$wanted" | sha256sum | cut -d' ' -f1)
# The secret is hashed, never printed: a changed password or token is re-read like the configuration.
conf_key=$(cat "$CONFIG" ${SECRET_FILE:+"$SECRET_FILE"} | sha256sum | cut -d' ' -f1)
if ! svc_running prometheus-alertmanager; then
  svc_start prometheus-alertmanager
elif [ "$(applied_get alertmanager-args)" != "$args_key" ]; then
  log "Alertmanager's options changed: restarting it"
  svc_restart prometheus-alertmanager
elif [ "$(applied_get alertmanager-config)" != "$conf_key" ]; then
  log "configuration changed: Alertmanager re-reads it"
  svc_reload prometheus-alertmanager
fi
wait_for "Alertmanager on 127.0.0.1:$PORT" 60 port_open 127.0.0.1 "$PORT"
applied_set alertmanager-args "$args_key"
applied_set alertmanager-config "$conf_key"
log "Alertmanager ready"
