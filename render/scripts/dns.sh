# dnsmasq on the controller answers for the cluster's nodes (bridged management networks). A new hosts
# file is re-read on SIGHUP; a changed configuration restarts dnsmasq.
[ -s "$HOSTS_FILE" ] || die "$HOSTS_FILE is missing: the hosts file step did not run"
conf_sha=$(sha256sum "$CONF_FILE" | cut -d' ' -f1)
hosts_sha=$(sha256sum "$HOSTS_FILE" | cut -d' ' -f1)
if ! svc_running dnsmasq; then
  svc_start dnsmasq
elif [ "$(applied_get dnsmasq-conf)" != "$conf_sha" ]; then
  log "dnsmasq configuration changed: restarting it"
  svc_restart dnsmasq
elif [ "$(applied_get dnsmasq-hosts)" != "$hosts_sha" ]; then
  log "the cluster's names changed: dnsmasq re-reads them"
  svc_reload dnsmasq
fi
wait_for "dnsmasq" 30 svc_running dnsmasq
applied_set dnsmasq-conf "$conf_sha"
applied_set dnsmasq-hosts "$hosts_sha"
log "dnsmasq serves $(grep -c -v '^#' "$HOSTS_FILE") names"
