# The operator image, built from this repository alone:
#   docker build -t selfupgrade-operator:dev .
# Build stage: the toolchain this project is tested with; --locked builds exactly Cargo.lock.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The playground and simulator subcommands embed these; the operator never reads them.
COPY crds ./crds
COPY examples ./examples
RUN cargo build --release --locked --bin selfupgrade-operator

# Runtime: distroless with glibc (aws-lc-rs links it), no shell, no package manager, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/selfupgrade-operator /selfupgrade-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/selfupgrade-operator"]
CMD ["run"]
