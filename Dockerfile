# Switchboard: one static binary on a distroless base, as a non-root user, with /data as its
# volume. Build: docker build -t switchboard .   Run: docker run -p 8080:8080 -p 8081:8081 -v sb:/data switchboard
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.buildVersion=${VERSION}" -o /out/switchboard ./cmd/switchboard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/switchboard /usr/local/bin/switchboard
# The access key is generated into /data on first start unless SWITCHBOARD_AUTH_ACCESS_KEYS is set;
# the history log lives there too.
ENV SWITCHBOARD_SERVER_DATA_DIR=/data \
    SWITCHBOARD_SERVER_ADDR=:8080 \
    SWITCHBOARD_SIGNALR_ADDR=:8081
VOLUME /data
EXPOSE 8080 8081
USER nonroot:nonroot
# No shell or curl in the image: the binary asks its own liveness probe.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/switchboard", "health", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve"]
