# Prometheus on the controller, its data on the protected state volume. promtool checks the configuration
# and the rules before they take effect. A new scrape target needs nothing (file_sd: Prometheus watches
# the targets directory); a changed configuration or rule file is re-read (SIGHUP); changed options
# (retention, listen address) restart it.
mountpoint -q "$STATE_MOUNT" || die "$STATE_MOUNT is not mounted: the state-volume step has not run"
install -d -o prometheus -g prometheus -m 0750 "$DATA_DIR"
for job in $JOBS; do install -d -m 0755 "$TARGETS_DIR/$job"; done
promtool check config "$CONFIG" >&2 || die "promtool rejects $CONFIG or its rules"
wanted="# Managed by hyperscaler: Prometheus's options (render/monitoring.py).
ARGS=\"$DAEMON_ARGS\""
defaults=/etc/default/prometheus
if [ "$(cat "$defaults" 2>/dev/null)" != "$wanted" ]; then
  printf '%s\n' "$wanted" > "$defaults.tmp"
  mv -f "$defaults.tmp" "$defaults"
fi
svc_dropin prometheus.service "[Unit]
RequiresMountsFor=$STATE_MOUNT"
args_key=$(printf '%s' "$wanted" | sha256sum | cut -d' ' -f1)
conf_key=$(cat "$CONFIG" "$RULES_DIR"/*.yml | sha256sum | cut -d' ' -f1)
if ! svc_running prometheus; then
  svc_start prometheus
elif [ "$(applied_get prometheus-args)" != "$args_key" ]; then
  log "Prometheus's options changed: restarting it"
  svc_restart prometheus
elif [ "$(applied_get prometheus-config)" != "$conf_key" ]; then
  log "configuration or rules changed: Prometheus re-reads them"
  svc_reload prometheus
fi
wait_for "Prometheus on 127.0.0.1:$PORT" 60 port_open 127.0.0.1 "$PORT"
applied_set prometheus-args "$args_key"
applied_set prometheus-config "$conf_key"
log "Prometheus ready"
