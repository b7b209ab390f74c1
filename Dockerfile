# Root filesystem of the managed plugin (docker plugin create needs config.json + rootfs/; the
# rootfs is this image, exported by scripts/build-plugin.sh). Build it through that script: it first
# puts our wheel and the wheels of every dependency into build/wheels/<arch> on the host, so this build
# needs no network and no compiler, and works the same from a registry base or a local one:
#   - default: python:3.11-slim-bookworm (any machine that can pull it);
#   - offline: BASE_IMAGE=elastic-logging-plugin/base:bookworm (debootstrap bookworm minbase + Debian's
#     python3, made by scripts/make-images.sh). Debian's python3 is 3.11 too, so the wheels fit both.
# One stage: the plugin's rootfs is `docker export` of a container of this image, which flattens the
# layers, so the wheels deleted below are not in it. (Two stages with COPY --from would not build for
# another arch: the legacy builder labels every committed step with the host's platform, and
# COPY --from then refuses the stage as "does not match the specified platform".)
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
# build/wheels/<Debian arch>/: the RUN below takes its own arch's folder (the base is Debian for both bases).
COPY build/wheels /wheels
# pip itself comes as a wheel and is run straight from the .whl file (a wheel is a zip that Python can
# import from), so the base needs no pip (Debian's minbase has none) and pip never reaches the rootfs.
# --target gives a plain folder that only needs PYTHONPATH (set in config.json). pip byte-compiles what
# it installs: the .pyc files are kept, they make the plugin start faster. The console scripts that
# --target puts in bin/ are not used. Then nothing the plugin does not use: the wheels, docs, man pages,
# translations (no-ops when already gone).
RUN set -eu; \
    wheels=/wheels/$(dpkg --print-architecture); \
    set -- "$wheels"/pip-*.whl; \
    python3 "$1/pip" install --no-index --find-links "$wheels" --no-cache-dir \
        --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
        --target /opt/elp/site elastic-logging-plugin; \
    rm -rf /opt/elp/site/bin /wheels; \
    PYTHONPATH=/opt/elp/site python3 -c 'import supervisor, workers, shipper, localstore, proto'; \
    rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* /var/lib/apt/lists/*
ENV PYTHONPATH=/opt/elp/site
# The same command as config.json's Entrypoint (socket name: see config.json). `docker create` of this
# image (by build-plugin.sh) needs a command, and `docker run` of the image is handy to check the install.
ENTRYPOINT ["python3", "-m", "supervisor", "serve"]
