# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the dev dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json binding.gyp ./
COPY scripts ./scripts
COPY src ./src
COPY bench ./bench
RUN npm run build
# The native addons, batched UDP (socket.native) and the TCP splice pump (tcp.native), used when they are
# there: node-gyp with python3, make and g++ against the image's own Node headers. A failed build only
# warns; the director then uses node:dgram and Node streams.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/* \
  && mkdir -p build/Release && npm_config_nodedir=/usr/local npm run install

# Runtime stage: production dependencies and the compiled output only, as a non-root user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/build/Release ./build/Release
# No config of its own: config/anchor.yaml is the loopback demo's (its nodes are not in the image, its
# listeners unreachable through published ports). Mount yours at /app/config/anchor.yaml; without one the
# container exits 2 naming the missing file. The examples document every key.
COPY config/anchor.example.yaml config/openvpn.example.yaml ./config/
USER node
# Client traffic (UDP) and the admin API. Bind the admin API to 0.0.0.0 in your config to reach it
# from outside the container, and set ANCHOR_ADMIN_TOKEN when you do.
EXPOSE 4500/udp 4500/tcp 9180/tcp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9180/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/src/main.js"]
CMD ["run", "--config", "config/anchor.yaml"]
