"""The Pulumi program: load and check the stack, build the cluster, export how to reach it."""

import pulumi

from components.cluster import HpcCluster, HpcClusterArgs
from components.images import S3Credentials
from config import ConfigError, load_from_pulumi
from config.load import s3_credentials_from_pulumi

try:
    stack, ssh_private_key, alert_receiver_secret = load_from_pulumi()
    s3_keys = s3_credentials_from_pulumi()
except ConfigError as error:
    # RunError ends the program with this message and no traceback; nothing has been declared yet.
    raise pulumi.RunError(error.report()) from None

for warning in stack.warnings:
    pulumi.log.warn(f"{warning.path or 'hyperscaler'}: {warning.message} ({warning.hint})")

s3_credentials = S3Credentials(*s3_keys) if s3_keys is not None else None
cluster = HpcCluster(
    stack.spec.name,
    HpcClusterArgs(
        stack.spec, ssh_private_key, s3_credentials=s3_credentials, alert_receiver_secret=alert_receiver_secret
    ),
)

pulumi.export("controller_address", cluster.controller_address)
pulumi.export("nodes", cluster.summary)
pulumi.export("canary", cluster.slurm.canary)
# Seconds from the controller VM's boot until the canary's jobs had run: on the `up` that creates the
# cluster, the time to the first job (None until the canary has run).
pulumi.export(
    "time_to_first_job_seconds",
    cluster.slurm.canary.apply(lambda c: c.get("controller_uptime_seconds") if isinstance(c, dict) else None)
    if cluster.slurm.canary is not None
    else None,
)
pulumi.export("known_hosts", cluster.known_hosts)
if cluster.monitoring is not None:
    # Each web UI's URL and the SSH tunnel that reaches it; no secret in either.
    pulumi.export("monitoring", cluster.monitoring.endpoints)
if cluster.containers is not None and cluster.containers.registry is not None:
    # host:port of the cluster registry: `docker push <registry>/team/app:1` on the controller.
    pulumi.export("registry", cluster.containers.registry)
