"""The `monitoring` section: Prometheus and Alertmanager on the controller, node-exporter on every node,
alert rules and where alerts go, and the Grafana settings (docs/monitoring.md).

Changing any of it reconfigures or restarts monitoring daemons on the running cluster; no VM is replaced
and no SLURM daemon is touched.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict

from config.impact import Impact, setting
from config.models.base import Model
from config.types import EmailAddress, GiB, HttpUrl, NonEmptyStr, Port, Seconds, Server

RECEIVER_SECRET_KEY = "hyperscaler:alertReceiverSecret"  # the stack secret an email or webhook receiver reads

Percent = Annotated[int, Strict(), Field(ge=1, le=99)]
Celsius = Annotated[int, Strict(), Field(ge=40, le=120)]
Days = Annotated[int, Strict(), Field(ge=1, le=3650)]


class EmailReceiver(Model):
    to: list[EmailAddress] = setting(impact=Impact.RECONFIGURE, doc="Who receives alert mail.", min_length=1)
    sender: EmailAddress = setting(impact=Impact.RECONFIGURE, doc="The From: address of alert mail.")
    smarthost: Server = setting(impact=Impact.RECONFIGURE, doc="SMTP server as host:port, e.g. smtp.example.com:587.")
    require_tls: bool = setting(True, impact=Impact.RECONFIGURE, doc="Refuse to send mail without STARTTLS.")
    auth_username: NonEmptyStr | None = setting(
        None,
        impact=Impact.RECONFIGURE,
        doc=f"SMTP login; its password is the stack secret {RECEIVER_SECRET_KEY}. None: no SMTP authentication.",
    )


class WebhookReceiver(Model):
    url: HttpUrl = setting(
        impact=Impact.RECONFIGURE,
        doc="Alertmanager POSTs its webhook JSON here. No credentials in the URL: a token goes in the stack "
        f"secret {RECEIVER_SECRET_KEY} with bearer_token: true.",
    )
    bearer_token: bool = setting(
        False,
        impact=Impact.RECONFIGURE,
        doc=f"Send the stack secret {RECEIVER_SECRET_KEY} as `Authorization: Bearer <secret>`.",
    )


class Alerts(Model):
    receiver: Literal["none", "email", "webhook"] = setting(
        "none",
        impact=Impact.RECONFIGURE,
        doc="Where Alertmanager sends alerts. none (the default): alerts are visible in Alertmanager and "
        "Prometheus only, nothing is sent anywhere.",
    )
    email: EmailReceiver | None = setting(None, impact=Impact.RECONFIGURE, doc="The email receiver's settings.")
    webhook: WebhookReceiver | None = setting(None, impact=Impact.RECONFIGURE, doc="The webhook receiver's settings.")
    pending_s: Seconds = setting(
        300,
        impact=Impact.RECONFIGURE,
        doc="How long a condition (node down, GPU too hot, disk filling...) must last before it alerts. Events "
        "(an XID error, ECC errors, a failed canary) alert at once.",
    )
    gpu_temperature_c: Celsius = setting(85, impact=Impact.RECONFIGURE, doc="A GPU hotter than this alerts.")
    disk_free_percent: Percent = setting(
        10, impact=Impact.RECONFIGURE, doc="A filesystem (local or shared) with less free space than this alerts."
    )


class Grafana(Model):
    port: Port = setting(3000, impact=Impact.RESTART, doc="Grafana's port on the controller.")
    expose: bool = setting(
        False,
        impact=Impact.RESTART,
        doc="Listen on the controller's management address. False (the default): loopback only, reached "
        "through the SSH tunnel given in the stack outputs.",
    )


class Monitoring(Model):
    enabled: bool = setting(
        False,
        impact=Impact.RECONFIGURE,
        doc="Prometheus and Alertmanager on the controller, node-exporter on every node, a SLURM metrics "
        "collector, alert rules, Grafana's files.",
    )
    retention_days: Days = setting(15, impact=Impact.RESTART, doc="How long Prometheus keeps samples.")
    retention_size_gib: GiB | None = setting(
        None,
        impact=Impact.RESTART,
        doc="The most disk Prometheus uses on the controller's state volume; None: half of state_disk_gib.",
    )
    scrape_interval_s: Seconds = setting(
        30, impact=Impact.RECONFIGURE, doc="How often Prometheus scrapes; the SLURM collector runs as often."
    )
    evaluation_interval_s: Seconds = setting(30, impact=Impact.RECONFIGURE, doc="How often alert rules run.")
    alerts: Alerts = setting(Alerts(), impact=Impact.RECONFIGURE, doc="Alert thresholds and where alerts go.")
    grafana: Grafana = setting(Grafana(), impact=Impact.RESTART, doc="Grafana on the controller.")
