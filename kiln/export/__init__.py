"""Export: hand an image to the engines that run VMs at scale, in the form they take.

machine.py  the image on a PCI machine (q35): its kernel with virtio-pci, and its command line
libvirt.py  a libvirt domain (direct kernel boot) and the files it names
kubevirt.py two OCI container images (containerDisk, kernel boot) and a VirtualMachine manifest
"""
