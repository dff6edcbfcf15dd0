# MariaDB (data on the state volume) and slurmdbd. The DB password is read from slurmdbd.conf (0600),
# so it never appears in a command line, a log or this script.
install -d -o mysql -g mysql -m 0750 "$MYSQL_DATADIR"
if [ ! -d "$MYSQL_DATADIR/mysql" ]; then
  log "initialising MariaDB in $MYSQL_DATADIR"
  mariadb-install-db --user=mysql --datadir="$MYSQL_DATADIR" --skip-test-db >/dev/null
fi
svc_start mariadb
wait_for "MariaDB" 60 mariadb -e 'SELECT 1'
# A MariaDB that was already running (an image that starts it at boot) may hold its data elsewhere than
# on the state volume: restart it on the configured datadir, or the accounting DB would not survive the VM.
datadir=$(mariadb -N -e 'SELECT @@datadir')
if [ "${datadir%/}" != "${MYSQL_DATADIR%/}" ]; then
  log "MariaDB runs on $datadir: restarting it on $MYSQL_DATADIR"
  svc_restart mariadb
  wait_for "MariaDB" 60 mariadb -e 'SELECT 1'
  datadir=$(mariadb -N -e 'SELECT @@datadir')
  [ "${datadir%/}" = "${MYSQL_DATADIR%/}" ] || die "MariaDB still uses $datadir instead of $MYSQL_DATADIR"
fi
db_pass=$(sed -n 's/^StoragePass=//p' /etc/slurm/slurmdbd.conf)
[ -n "$db_pass" ] || die "StoragePass missing from /etc/slurm/slurmdbd.conf"
db_pass_sql=${db_pass//\'/\'\'}
mariadb <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$db_pass_sql';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$db_pass_sql';
GRANT ALL ON \`$DB_NAME\`.* TO 'slurm'@'localhost';
SQL
install -d -o slurm -g slurm -m 0755 /var/log/slurm
chown slurm:slurm /etc/slurm/slurmdbd.conf
chmod 0600 /etc/slurm/slurmdbd.conf
conf_sha=$(cat /etc/slurm/slurmdbd.conf /etc/mysql/mariadb.conf.d/60-hyperscaler.cnf | sha256sum | cut -d' ' -f1)
if [ "$(applied_get slurmdbd)" != "$conf_sha" ] && svc_running slurmdbd; then
  svc_restart slurmdbd
else
  svc_start slurmdbd
fi
wait_for "slurmdbd" 60 sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER_NAME"; then
  sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
fi
applied_set slurmdbd "$conf_sha"
log "accounting ready"
