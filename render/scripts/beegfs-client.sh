# The BeeGFS client: the kernel module for the running kernel (built by DKMS), then the mount at MOUNT,
# now and at every boot (the beegfs-client service mounts what /etc/beegfs/beegfs-mounts.conf lists).
# The management service may still be starting: it is waited for, up to WAIT seconds.
if [ "$VERSION" = 8 ]; then
  require_beegfs beegfs
else
  require_beegfs beegfs-ctl beegfs-helperd
fi
[ -s /etc/beegfs/conn.auth ] || die "/etc/beegfs/conn.auth is missing: the auth file step did not run"
headers="linux-headers-$(uname -r)"
if ! dpkg-query -W -f='${Status}' "$headers" 2>/dev/null | grep -q '^install ok installed$'; then
  log "installing $headers for the client module"
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$headers"
fi
deadline=$((SECONDS + WAIT))
until (exec 3<>"/dev/tcp/$MGMTD/8008") 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || die "the BeeGFS management service at $MGMTD:8008 did not answer within ${WAIT}s"
  sleep 3
done
[ -d "$MOUNT" ] || install -d -m 0755 "$MOUNT"
[ "$VERSION" = 8 ] || svc_start beegfs-helperd
conf_sha=$(cat /etc/beegfs/beegfs-client.conf /etc/beegfs/beegfs-mounts.conf /etc/beegfs/conn.auth | sha256sum | cut -d' ' -f1)
if svc_running beegfs-client && [ "$(applied_get beegfs-client)" != "$conf_sha" ]; then
  svc_restart beegfs-client
else
  svc_start beegfs-client
fi
wait_for "BeeGFS mounted at $MOUNT" "$WAIT" mountpoint -q "$MOUNT"
applied_set beegfs-client "$conf_sha"
log "BeeGFS mounted at $MOUNT"
