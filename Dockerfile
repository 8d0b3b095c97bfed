# Multi-stage build: the image holds only the binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/tenant-vault tenant-vault \
    && install -d -o tenant-vault -g tenant-vault -m 0700 /var/lib/tenant-vault
# The data dir (audit journal) must be writable by the service user, not root.
COPY --from=build /src/target/release/tenant-vault /usr/local/bin/tenant-vault
USER tenant-vault
WORKDIR /var/lib/tenant-vault
EXPOSE 8210
ENTRYPOINT ["tenant-vault"]
# Off loopback, `serve` needs TLS (TENANT_VAULT_TLS_CERT, TENANT_VAULT_TLS_KEY) or, behind a
# TLS-terminating proxy on a private network, TENANT_VAULT_INSECURE_NO_TLS=true (docs/tls.md).
CMD ["serve", "--listen", "0.0.0.0:8210"]
