# Flotilla's container image: one node per container, `flotilla start` by default, configured
# by FLOTILLA_* environment variables, flags after `start`, or a mounted config file
# (`start --config /etc/flotilla/node.yaml`); docs/CONFIG.md lists every setting and
# docs/PRODUCTION.md describes running it.
#
#   docker build -t flotilla .                       (or: podman build --format docker ...)
#   docker build --build-arg BASE_IMAGE=my-registry/node:20-slim -t flotilla .
#
# BASE_IMAGE must be a Debian-based Node.js 20 image laid out as the official ones are (node,
# npm and the Node headers under /usr/local). Both stages start from it: the native SQLite
# addon is compiled in the first against the same Node and C library it runs on in the second.

ARG BASE_IMAGE=node:20-slim

FROM ${BASE_IMAGE} AS build
# A C++ tool chain for better-sqlite3, compiled from source against this image's Node headers
# rather than fetched prebuilt from the network.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 make g++ \
    && rm -rf /var/lib/apt/lists/*
ENV npm_config_nodedir=/usr/local \
    npm_config_build_from_source=true \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false
WORKDIR /src
# The dependencies first, in a layer of their own that a source change does not rebuild.
# Scripts are held back (`prepare` would compile sources not yet copied), then the two
# packages with native parts are built.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3 msgpackr-extract
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
COPY test ./test
COPY bench ./bench
# Compile, drop the development dependencies, and the addon's sources and objects (the
# compiled addon is all that runs).
RUN node scripts/build.mjs \
    && npm prune --omit=dev --ignore-scripts \
    && cd node_modules/better-sqlite3 \
    && rm -rf deps src build/Release/obj build/Release/obj.target build/Release/.deps \
        build/Release/test_extension.node build/deps build/Makefile build/*.mk

FROM ${BASE_IMAGE} AS runtime
# A user of its own, not root; the data directory is a volume it owns.
RUN groupadd --system --gid 10001 flotilla \
    && useradd --system --uid 10001 --gid flotilla --home-dir /var/lib/flotilla \
        --no-create-home --shell /usr/sbin/nologin flotilla \
    && mkdir -p /var/lib/flotilla \
    && chown flotilla:flotilla /var/lib/flotilla
WORKDIR /opt/flotilla
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
# The dashboard's page and scripts, served as they are (read at start-up from beside dist/).
COPY dashboard ./dashboard
# Listen on every interface of the container; members and clients reach it by its name, which
# FLOTILLA_ADVERTISE_PEER and FLOTILLA_ADVERTISE_CLIENT (or the member list) give. Environment
# variables override a config file: set one of these empty to take the file's value instead.
# FLOTILLA_SERVING_FILE is not a setting: the node writes there where it serves, for the
# HEALTHCHECK, whatever data directory and port it was given.
ENV NODE_ENV=production \
    FLOTILLA_DATA_DIR=/var/lib/flotilla/data \
    FLOTILLA_SERVING_FILE=/var/lib/flotilla/serving.json \
    FLOTILLA_LISTEN_PEER=0.0.0.0:7001 \
    FLOTILLA_LISTEN_CLIENT=0.0.0.0:8001 \
    FLOTILLA_LOG_FORMAT=json
USER 10001:10001
VOLUME ["/var/lib/flotilla"]
EXPOSE 7001 8001
# Ready: knows a leader, has applied what it knows committed, is not recovering lost data. A
# node joining a cluster or catching up after a lost volume is not ready yet, hence the long
# start period.
HEALTHCHECK --interval=5s --timeout=5s --start-period=120s --retries=3 \
    CMD ["node", "/opt/flotilla/dist/src/cli/healthcheck.js"]
# SIGTERM: a leader hands leadership to a voter it heard from lately, the most caught up, the node flushes and
# closes its storage, and the process exits 0 (within about two seconds of the hand-off).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/opt/flotilla/dist/src/cli/main.js"]
CMD ["start"]
