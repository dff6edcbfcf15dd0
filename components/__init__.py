"""ComponentResources: every libvirt, command and docker resource lives inside one of these."""
