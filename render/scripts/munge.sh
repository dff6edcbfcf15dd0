# Start munged with the cluster's key; restart it when the key changed since the last run.
[ -s /etc/munge/munge.key ] || die "/etc/munge/munge.key is missing: the key file step did not run"
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
key_sha=$(sha256sum /etc/munge/munge.key | cut -d' ' -f1)
if [ "$(applied_get munge)" != "$key_sha" ] && svc_running munge; then
  log "munge key changed: restarting munged"
  svc_restart munge
else
  svc_start munge
fi
wait_for "munged to answer" 30 sh -c 'munge -n | unmunge'
applied_set munge "$key_sha"
log "munge ready"
