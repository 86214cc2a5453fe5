"""An emulated Raspberry Pi (arm64 Pi OS userland under qemu-user) to deploy to and test on."""
