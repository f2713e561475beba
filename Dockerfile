# The operator image, built from this repository alone:
#   docker build -t selfupgrade-operator:dev .
# Build stage: the toolchain this project is tested with; --locked builds exactly Cargo.lock.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# A member of the workspace, so cargo must find its manifest; only the operator package is built
# (`-p`), and only its binary reaches the image below.
COPY testbed ./testbed
RUN cargo build --release --locked -p selfupgrade-operator --bin selfupgrade-operator

# Runtime: distroless with glibc (aws-lc-rs links it), no shell, no package manager, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/selfupgrade-operator /selfupgrade-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/selfupgrade-operator"]
CMD ["run"]
