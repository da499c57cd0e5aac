"""Container images in: an OCI image (from a registry, an OCI layout or a `docker save` archive) or a
Dockerfile becomes a kiln image, trimmed to what its program uses and sealed.

    reference ──source──▶ one image for this platform, in a private OCI layout (skopeo)
              ──unpack──▶ its root file system, layers applied (umoci, rootless), and its config
    Dockerfile ─dockerfile─▶ built by buildah, then as above
              ──build───▶ the program and its ELF closure, the image's data files, or the Python
                          analysis with the image's own interpreter, sandboxed (kiln.sandbox)
"""
