# The controller role image: the base plus the controller packages, installed by the same packages step
# (render/scripts/packages.sh, config/packages.py) that `pulumi up` runs on a controller node.
build {
  name = "controller"

  source "source.qemu.role" {
    vm_name          = "controller.qcow2"
    output_directory = "${var.output_dir}/controller"
  }

  provisioner "shell" {
    script = "${var.packages_dir}/controller.sh"
  }

  provisioner "shell" {
    script = "${var.scripts_dir}/finalize.sh"
  }
}
