#!/usr/bin/env bash
# What Redis itself gives for PUBLISH on this machine, to set next to the
# `cluster_rate` bench: a redis-server of its own on a free 127.0.0.1 port
# (persistence off), then redis-benchmark publishing 64-byte messages with
# no subscriber: one client one request at a time, one client pipelining 16
# (as Wharf's publisher pipelines), and 50 clients (redis-benchmark's
# default). redis-benchmark 7 has no `-t publish` test (it prints nothing),
# so the command is given explicitly.
set -euo pipefail
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
payload=$(printf 'c%.0s' $(seq 64))
echo "redis-benchmark PUBLISH, 64-byte messages, requests per second:"
printf '1 client:             '; redis-benchmark -p "$port" -n 100000 -c 1 -q PUBLISH chan "$payload" | tr '\r' '\n' | tail -1
printf '1 client, 16 per pipe: '; redis-benchmark -p "$port" -n 400000 -c 1 -P 16 -q PUBLISH chan "$payload" | tr '\r' '\n' | tail -1
printf '50 clients:           '; redis-benchmark -p "$port" -n 200000 -q PUBLISH chan "$payload" | tr '\r' '\n' | tail -1
