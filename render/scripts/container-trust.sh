# container-trust.sh: the system certificate store trusts the cluster registry's certificate (SYSTEM_CA,
# pushed on its own), for Enroot and Apptainer; Docker reads its own copy under /etc/docker/certs.d.
[ -s "$SYSTEM_CA" ] || die "$SYSTEM_CA is missing: its file Command runs first"
command -v update-ca-certificates >/dev/null || die "update-ca-certificates is missing: install ca-certificates"
key=$(sha256sum "$SYSTEM_CA" | cut -d' ' -f1)
if [ "$(applied_get container-trust)" != "$key" ]; then
  update-ca-certificates >/dev/null
  applied_set container-trust "$key"
  log "the system store trusts the registry certificate"
fi
