# The ASRS emulator (emulated instances and app servers) for docker/compose.yaml: a test
# double, never part of the edge image.
#   docker build -f docker/emulator.Dockerfile -t asrs-emulator .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p asrs-emulator \
 && install -D -m 0755 target/release/asrs-emulator /out/asrs-emulator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/asrs-emulator /usr/local/bin/asrs-emulator
USER 65532:65532
# It stops on SIGINT only.
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/asrs-emulator"]
CMD ["-c", "/etc/asrs-emulator/emulator.yaml"]
