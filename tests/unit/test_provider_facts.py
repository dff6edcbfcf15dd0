"""components/provider_facts.json: what the providers replace, update, or accept without applying."""

from __future__ import annotations

from components.provider_facts import facts, for_type

DOMAIN = "libvirt:index/domain:Domain"


def test_every_type_the_program_declares_has_facts() -> None:
    for token in (
        DOMAIN,
        "libvirt:index/network:Network",
        "libvirt:index/volume:Volume",
        "libvirt:index/pool:Pool",
        "libvirt:index/cloudInitDisk:CloudInitDisk",
        "command:remote:Command",
        "random:index/randomBytes:RandomBytes",
        "random:index/randomPassword:RandomPassword",
    ):
        assert token in facts(), token


def test_domain_replacements_follow_the_schema() -> None:
    domain = for_type(DOMAIN)
    assert domain is not None
    assert domain.replaced_by("vcpu", 2, 4)
    assert domain.replaced_by("xml", {"xslt": "a"}, {"xslt": "b"})
    # a ForceNew list of objects replaces on a new length or a ForceNew field, not on volumeId
    assert domain.replaced_by("disks", [{"volumeId": "a"}], [{"volumeId": "a"}, {"volumeId": "b"}])
    assert not domain.replaced_by("disks", [{"volumeId": "a"}], [{"volumeId": "b"}])
    assert domain.replaced_by("disks", [{"volumeId": "a"}], [{"volumeId": "a", "scsi": True}])
    # in place: cloudinit is swapped, networkInterfaces rewrite DHCP hosts; kernel is accepted, never applied
    assert not domain.replaced_by("cloudinit", "a", "b") and domain.applies("cloudinit")
    assert not domain.replaced_by("kernel", "/a", "/b") and not domain.applies("kernel")


def test_commands_replace_only_on_triggers() -> None:
    command = for_type("command:remote:Command")
    assert command is not None
    assert command.replaced_by("triggers", ["a"], ["b"])
    assert not command.replaced_by("create", "a", "b") and command.applies("create")


def test_volumes_replace_on_anything() -> None:
    volume = for_type("libvirt:index/volume:Volume")
    assert volume is not None and volume.replaced_by("size", 1, 2)
